// Mark the page as having JavaScript before it is drawn, as the NHS.UK frontend expects. A
// classic script from /static (not inline), so the Content-Security-Policy needs no
// 'unsafe-inline' for scripts.
document.body.className +=
  " js-enabled" + ("noModule" in HTMLScriptElement.prototype ? " nhsuk-frontend-supported" : "");
