/* "/": MLflow's UI links keep their target in the fragment (never sent to the server); go to the matching page. */
(function () {
  "use strict";
  function part(text) {
    try {
      return encodeURIComponent(decodeURIComponent(text));
    } catch (e) {
      return encodeURIComponent(text);
    }
  }
  var hash = window.location.hash || "";
  var target = "/ui/";
  var found;
  if ((found = hash.match(/^#\/experiments\/[^/]+\/runs\/([^/?#]+)/))) {
    target = "/ui/runs/" + part(found[1]);
  } else if ((found = hash.match(/^#\/models\/([^/?#]+)\/versions\/(\d+)/))) {
    target = "/ui/models/" + part(found[1]) + "/versions/" + found[2];
  } else if ((found = hash.match(/^#\/models\/([^/?#]+)\/?$/))) {
    target = "/ui/models/" + part(found[1]);
  }
  window.location.replace(target);
})();
