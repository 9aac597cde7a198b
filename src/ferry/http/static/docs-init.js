// Starts Swagger UI on /docs. A file of its own, not an inline script, so the page's
// Content-Security-Policy can forbid inline scripts altogether.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    // Signed in at /login, "Try it out" is authenticated by the session cookie; changes
    // made with it need this header (see docs/security.md).
    requestInterceptor: function (request) {
      request.headers["X-Ferry-CSRF"] = "1";
      return request;
    },
  });
})();
