// The OpenAPI page: Swagger UI from the package's own copy (static/vendor), started here rather than in an
// inline script, which the pages' Content-Security-Policy forbids. The schema sits beside the page.
const root = document.getElementById("swagger-ui");

window.ui = window.SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  domNode: root,
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null, // no badge from validator.swagger.io: the page loads nothing from the internet
  presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
});
