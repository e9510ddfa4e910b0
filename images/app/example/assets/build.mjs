// Builds static/build/app.css and static/build/app.js from assets/src with
// no dependencies (the build must work without an npm registry): comments
// and needless whitespace go. With --watch it rebuilds on every change, the
// way `initd dev` runs it as a watcher (INITD_WATCHERS=assets=node assets/build.mjs --watch).
import { mkdirSync, readFileSync, renameSync, watch, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const srcDir = join(root, "assets", "src");
const outDir = join(root, "static", "build");

// Strings are kept as they are; everything else loses comments and runs of
// whitespace. Good enough for hand-written CSS, and no parser is needed.
function minifyCss(text) {
    const parts = text.split(/("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')/);
    return parts
        .map((part, i) => {
            if (i % 2 === 1) return part;
            return part
                .replace(/\/\*[\s\S]*?\*\//g, "")
                .replace(/\s+/g, " ")
                .replace(/\s*([{}:;,>])\s*/g, "$1")
                .replace(/;}/g, "}");
        })
        .join("")
        .trim();
}

// Only whole-line `//` comments, block comments and indentation go: a
// tokenizer-free minifier must not touch anything that might be inside a
// string or a regular expression.
function minifyJs(text) {
    return text
        .replace(/^\s*\/\*[\s\S]*?\*\/\s*$/gm, "")
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line && !line.startsWith("//"))
        .join("\n");
}

const targets = [
    { src: "app.css", out: "app.css", minify: minifyCss },
    { src: "app.js", out: "app.js", minify: minifyJs },
];

function build() {
    mkdirSync(outDir, { recursive: true });
    for (const t of targets) {
        const input = readFileSync(join(srcDir, t.src), "utf8");
        const output = t.minify(input) + "\n";
        // Write then rename: the dev server never serves a half-written file.
        const dest = join(outDir, t.out);
        writeFileSync(dest + ".tmp", output);
        renameSync(dest + ".tmp", dest);
        console.log(`built static/build/${t.out} (${input.length} -> ${output.length} bytes)`);
    }
}

function buildReportingErrors() {
    try {
        build();
        return true;
    } catch (err) {
        console.error(`build failed: ${err.message}`);
        return false;
    }
}

if (process.argv.includes("--watch")) {
    buildReportingErrors();
    let timer = null;
    // Editors save in bursts (write, rename, chmod): one rebuild per burst.
    watch(srcDir, () => {
        clearTimeout(timer);
        timer = setTimeout(buildReportingErrors, 100);
    });
    console.log("watching assets/src for changes");
    // initd stops watchers with SIGTERM; exit at once and cleanly.
    process.on("SIGTERM", () => process.exit(0));
} else if (!buildReportingErrors()) {
    process.exit(1);
}
