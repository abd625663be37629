// Loads the wasm UI (a separate file, so the content security policy needs no inline script).
import init from "./app-ui.js";
init();
