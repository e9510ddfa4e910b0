// The example app's script. assets/build.mjs strips comments and blank
// lines into static/build/app.js.
(function () {
    "use strict";
    const clock = document.getElementById("clock");
    function tick() {
        clock.textContent = "Rendered by the browser at " + new Date().toLocaleTimeString();
    }
    if (clock) {
        tick();
        setInterval(tick, 1000);
    }
})();
