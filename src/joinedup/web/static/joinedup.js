// Start the NHS.UK frontend components (header menu, skip link) from the local copy.
import { initAll } from "./nhsuk/nhsuk-frontend-10.6.1.min.js";

initAll();

// Printing shows every folded table: each closed <details> is opened before the page is
// printed and closed again after, so paper holds the figures the screen folds away.
const opened = [];
window.addEventListener("beforeprint", () => {
  for (const box of document.querySelectorAll("details:not([open])")) {
    box.open = true;
    opened.push(box);
  }
});
window.addEventListener("afterprint", () => {
  for (const box of opened.splice(0)) box.open = false;
});
