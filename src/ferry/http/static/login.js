// /login: trade an API key for the session cookie, then go to the page that sent the
// browser here (?next=, a path inside Ferry) or the model catalog. The key
// comes from the URL fragment (/login#key=..., printed at the first start; browsers
// never send a fragment to the server, so it reaches no log) or from the form.
(function () {
  "use strict";
  var form = document.getElementById("login");
  var field = document.getElementById("key");
  var status = document.getElementById("status");

  function login(key) {
    status.textContent = "Signing in...";
    fetch("api/v1/session", {
      method: "POST",
      headers: { "Authorization": "Bearer " + key, "X-Ferry-CSRF": "1" },
      credentials: "same-origin",
    }).then(function (response) {
      if (response.ok) {
        // The body is read first: leaving the page mid-answer would abort the request.
        return response.json().then(function () {
          window.location.replace(destination());
        });
      }
      return response.json().then(function (body) {
        status.textContent = body.error || "Sign-in failed (HTTP " + response.status + ")";
      }, function () {
        status.textContent = "Sign-in failed (HTTP " + response.status + ")";
      });
    }, function () {
      status.textContent = "The server cannot be reached.";
    });
  }

  // Only a relative path inside Ferry (resolved against /login's folder): never another site.
  function destination() {
    var next = new URLSearchParams(window.location.search).get("next") || "";
    var safe = /^[A-Za-z0-9_.~%-][A-Za-z0-9_.~%\/-]*$/.test(next) && !/\.\.|%2e/i.test(next);
    return safe ? next : "./";
  }

  var fromUrl = new URLSearchParams(window.location.hash.slice(1)).get("key");
  if (fromUrl) {
    // Out of the address bar and the history before anything else happens. The key fills
    // the form but is not sent until the user clicks: a link someone else made must not
    // sign this browser in with their key unnoticed.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    field.value = fromUrl;
    status.textContent = "Key " + fromUrl.slice(0, 15) + "... from the link: select Sign in to use it.";
    form.querySelector("button").focus();
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    login(field.value.trim());
  });
})();
