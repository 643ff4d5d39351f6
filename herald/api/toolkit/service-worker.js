/* Herald web push service worker for "{{RESOURCE_NAME}}": shows each push, reports it delivered and opened. */
"use strict";

function ping(url) {
  /* a tracker link: its answer does not matter, only that it was called */
  return url ? fetch(url, {mode: "no-cors", credentials: "omit"}).catch(function () {}) : Promise.resolve();
}

self.addEventListener("push", function (event) {
  var data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = {title: "", body: event.data ? event.data.text() : ""};
  }
  var links = data.hub_link || {};
  var shown = self.registration.showNotification(data.title || "", {
    body: data.body || "",
    icon: data.icon || undefined,
    tag: data.message_id || undefined,
    data: {url: data.url || "", open: links.open || ""}
  });
  event.waitUntil(Promise.all([shown, ping(links.ack)]));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var data = event.notification.data || {};
  var opened = data.url ? self.clients.openWindow(data.url) : Promise.resolve();
  event.waitUntil(Promise.all([opened, ping(data.open)]));
});
