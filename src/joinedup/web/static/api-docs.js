// Start Swagger UI on /api/docs from this file rather than an inline script, so the page
// needs no more than the dashboard's Content-Security-Policy (scripts from 'self' only).
// The settings are FastAPI's defaults for its own docs page, less the online validator
// badge, which would fetch from another host.
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
