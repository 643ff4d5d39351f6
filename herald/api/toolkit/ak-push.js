/* Herald web push for "{{RESOURCE_NAME}}": subscribe this browser, as AKPush().initSubscription(match, update). */
(function () {
  "use strict";
  var HERALD = {
    subscribeUrl: "{{SUBSCRIBE_URL}}",
    resourceToken: "{{RESOURCE_TOKEN}}",
    applicationServerKey: "{{VAPID_PUBLIC_KEY}}",
    serviceWorker: "/service-worker.js"
  };

  function keyBytes(base64url) {
    var padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function browserName() {
    var ua = navigator.userAgent;
    if (/OPR\//.test(ua)) return "opera";
    if (/Firefox\//.test(ua)) return "firefox";
    if (/Chrome\//.test(ua)) return "chrome";
    if (/Safari\//.test(ua)) return "safari";
    return null;
  }

  function AKPush() {
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
      throw new Error("this browser has no web push");
    }
  }

  /* match: {profile_field: "value"} finds the profile; update: {field: value} is written to it. */
  AKPush.prototype.initSubscription = function (match, update) {
    return navigator.serviceWorker.register(HERALD.serviceWorker)
      .then(function (registration) {
        return Notification.requestPermission().then(function (permission) {
          if (permission !== "granted") throw new Error("notifications were not allowed");
          return registration.pushManager.getSubscription().then(function (existing) {
            return existing || registration.pushManager.subscribe({
              userVisibleOnly: true,
              applicationServerKey: keyBytes(HERALD.applicationServerKey)
            });
          });
        });
      })
      .then(function (subscription) {
        return fetch(HERALD.subscribeUrl, {
          method: "POST",
          credentials: "include", /* the tracking domain's cookie: the profile that opened our emails here */
          headers: {"Content-Type": "text/plain"}, /* a simple request: no preflight */
          body: JSON.stringify({
            resource_token: HERALD.resourceToken,
            subscription: subscription.toJSON(),
            match: match || {},
            update: update || {},
            browser: browserName()
          })
        });
      })
      .then(function (response) {
        if (!response.ok) throw new Error("the subscription was refused: " + response.status);
        return response.json();
      });
  };

  window.AKPush = AKPush;
})();
