// Start the NHS.UK frontend components (header menu, skip link) from the local copy.
import { initAll } from "./nhsuk/nhsuk-frontend-10.6.1.min.js";

initAll();
