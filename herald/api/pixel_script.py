"""The pixel script a site loads (`/pixel/ak.js`): page views by config, and `ak_pixel_push`.

Each page code pushes a config onto `window.akPixelConfigs` (see
`domain/pixel_codes.py`); the script reports each config's page view (with
`auto_load` at once, with `after_scroll` on the first scroll; after `timeout`
ms) and sends the calls queued on `window.akPixelQueue` before it loaded.
`ak_pixel_push(tags, value, match, update, matching_mode)` sends a hit to the
first config's pixel: `tags` a name or a list of names, `value` one number
for them all, `match`/`update`/`matching_mode` as the guide describes (used
when the pixel allows import).

A hit is an image request (`new Image()`), so it needs no CORS and carries
the tracker's `herald_vid` cookie. The page's URL and referrer go with it; a
`herald_visitor` parameter in the page's URL (from a message's `{visitor}`)
is kept in the site's local storage and sent as `hv` with every hit.
"""

PIXEL_SCRIPT = r"""/* Herald pixel: ak_pixel_push(tags, value, match, update, matching_mode) */
(function (w, d) {
  if (w.ak_pixel_push && w.ak_pixel_push.herald) { return; }
  var KEY = "herald_visitor";
  var configs = w.akPixelConfigs = w.akPixelConfigs || [];
  var queued = w.akPixelQueue || [];

  function visitor() {
    try {
      var found = new RegExp("[?&]" + KEY + "=([^&#]*)").exec(w.location.search || "");
      if (found) { w.localStorage.setItem(KEY, decodeURIComponent(found[1])); }
      return w.localStorage.getItem(KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function names(tags) {
    if (tags === undefined || tags === null || tags === "") { return []; }
    return [].concat(tags);
  }

  function send(pixel, tags, value, match, update, mode) {
    var query = ["t=js", "goals=" + encodeURIComponent(names(tags).join(","))];
    if (value !== undefined && value !== null && value !== "") {
      query.push("value=" + encodeURIComponent(value));
    }
    if (match) { query.push("match=" + encodeURIComponent(JSON.stringify(match))); }
    if (update) { query.push("update=" + encodeURIComponent(JSON.stringify(update))); }
    if (mode) { query.push("matching_mode=" + encodeURIComponent(mode)); }
    var hv = visitor();
    if (hv) { query.push("hv=" + encodeURIComponent(hv)); }
    query.push("url=" + encodeURIComponent(w.location.href));
    if (d.referrer) { query.push("ref=" + encodeURIComponent(d.referrer)); }
    var image = new w.Image(1, 1);
    image.src = pixel + (pixel.indexOf("?") < 0 ? "?" : "&") + query.join("&");
    return image.src;
  }

  function goalsOf(config) {
    var text = config.goals ? decodeURIComponent(config.goals) : "";
    return text ? text.split(",") : [];
  }

  function start(config) {
    var fire = function () {
      w.setTimeout(function () { send(config.pixel, goalsOf(config), config.value); }, config.timeout || 0);
    };
    if (config.after_scroll) {
      var once = function () { w.removeEventListener("scroll", once); fire(); };
      w.addEventListener("scroll", once);
    } else if (config.auto_load !== false) {
      fire();
    }
  }

  var push = function (tags, value, match, update, matching_mode) {
    if (!configs.length) { return null; }
    return send(configs[0].pixel, tags, value, match, update, matching_mode);
  };
  push.herald = true;
  w.ak_pixel_push = push;
  for (var i = 0; i < configs.length; i++) { start(configs[i]); }
  configs.push = function (config) {
    Array.prototype.push.call(configs, config);
    start(config);
    return configs.length;
  };
  for (var j = 0; j < queued.length; j++) { push.apply(null, queued[j]); }
})(window, document);
"""
