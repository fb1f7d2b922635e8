//! Builds the web UI into OUT_DIR and generates `assets.rs`, which embeds every file.
//!
//! Steps: copy `web/package.json`, `web/package-lock.json` and `web/build.mjs` to
//! OUT_DIR/npm; `npm ci --omit=dev` there when the lock file differs from the one last
//! installed (npm's cache makes a repeat fast and offline); run `node build.mjs`, which
//! bundles `web/src` with esbuild into OUT_DIR/dist. Installing into OUT_DIR keeps the
//! source tree clean and lets two target directories build at once.
//!
//! `LASTMILE_UI_DIST=<dir>` embeds an already built `dist` directory instead (no Node.js
//! needed); `LASTMILE_UI_NODE` / `LASTMILE_UI_NPM` name other node / npm binaries.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const MIN_NODE_MAJOR: u32 = 18;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let web = manifest_dir.join("web");
    for input in [
        "src",
        "index.html",
        "favicon.svg",
        "build.mjs",
        "package.json",
        "package-lock.json",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed=web/{input}");
    }
    for var in ["LASTMILE_UI_DIST", "LASTMILE_UI_NODE", "LASTMILE_UI_NPM"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let dist = match env::var_os("LASTMILE_UI_DIST") {
        Some(d) => PathBuf::from(d),
        None => {
            let dist = out.join("dist");
            build_assets(&web, &out, &dist);
            dist
        }
    };
    let code = generate(&dist);
    fs::write(out.join("assets.rs"), code)
        .unwrap_or_else(|e| fail(&format!("cannot write assets.rs: {e}")));
}

fn fail(msg: &str) -> ! {
    // A panic in a build script prints its message under "failed to run custom build
    // command"; say what to do, not just what broke.
    panic!("\n\nlastmile-ui: {msg}\n\n");
}

fn tool(var: &str, default: &str) -> String {
    env::var(var).unwrap_or_else(|_| default.to_owned())
}

fn run(cmd: &mut Command, what: &str) {
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {shown}: {e}")));
    if !output.status.success() {
        fail(&format!(
            "{what} failed ({}): {shown}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // Kept in target/…/output for whoever wants the bundle sizes; not a warning.
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

fn build_assets(web: &Path, out: &Path, dist: &Path) {
    let node = tool("LASTMILE_UI_NODE", "node");
    let npm = tool("LASTMILE_UI_NPM", "npm");
    let version = Command::new(&node).arg("--version").output();
    let version = match version {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => fail(&format!(
            "Node.js ({node}) was not found. Building the web UI needs Node.js >= {MIN_NODE_MAJOR} and npm \
             (Debian/Ubuntu: apt-get install nodejs npm; or set LASTMILE_UI_DIST to a prebuilt dist directory)."
        )),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < MIN_NODE_MAJOR {
        fail(&format!(
            "Node.js {version} is too old: the web UI's bundler (esbuild) needs Node.js >= {MIN_NODE_MAJOR}."
        ));
    }
    if !Command::new(&npm)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        fail(&format!(
            "npm ({npm}) was not found next to Node.js {version}. Install npm (Debian/Ubuntu: apt-get install npm)."
        ));
    }

    let deps = out.join("npm");
    fs::create_dir_all(&deps)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", deps.display())));
    let lock = fs::read(web.join("package-lock.json"))
        .unwrap_or_else(|e| fail(&format!("cannot read web/package-lock.json: {e}")));
    let package = fs::read(web.join("package.json"))
        .unwrap_or_else(|e| fail(&format!("cannot read web/package.json: {e}")));
    for name in ["package.json", "package-lock.json", "build.mjs"] {
        fs::copy(web.join(name), deps.join(name))
            .unwrap_or_else(|e| fail(&format!("cannot copy web/{name}: {e}")));
    }
    // What was installed last time: skip `npm ci` while package.json and the lock match it.
    let stamp = deps.join("node_modules").join(".lastmile-installed");
    let wanted = [package.as_slice(), b"\n--\n", lock.as_slice()].concat();
    if fs::read(&stamp).ok().as_deref() != Some(wanted.as_slice()) {
        run(
            Command::new(&npm)
                .args([
                    "ci",
                    "--omit=dev",
                    "--no-audit",
                    "--no-fund",
                    "--prefer-offline",
                    "--loglevel=error",
                ])
                .current_dir(&deps),
            "npm ci (installing the web UI's build dependencies from the npm registry or npm's cache)",
        );
        fs::write(&stamp, &wanted)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", stamp.display())));
    }
    run(
        Command::new(&node)
            .arg(deps.join("build.mjs"))
            .arg("--src")
            .arg(web)
            .arg("--out")
            .arg(dist)
            .arg("--node-modules")
            .arg(deps.join("node_modules")),
        "bundling the web UI (node build.mjs)",
    );
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn generate(dist: &Path) -> String {
    let list = dist.join("manifest.tsv");
    let text = fs::read_to_string(&list)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", list.display())));
    let mut code =
        String::from("// Generated by build.rs from the web UI build: every file, embedded.\n");
    code.push_str("pub static ASSETS: &[Asset] = &[\n");
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut f = line.split('\t');
        let (Some(name), Some(hash), Some(immutable)) = (f.next(), f.next(), f.next()) else {
            fail(&format!("malformed line in {}: {line:?}", list.display()));
        };
        let file = dist.join(name);
        for variant in ["", ".gz", ".br"] {
            let p = PathBuf::from(format!("{}{variant}", file.display()));
            if !p.is_file() {
                fail(&format!("the web UI build did not produce {}", p.display()));
            }
        }
        let _ = writeln!(
            code,
            "    Asset {{ path: {path:?}, content_type: {ct:?}, etag: {etag:?}, immutable: {imm}, raw: include_bytes!({raw:?}), gzip: include_bytes!({gz:?}), brotli: include_bytes!({br:?}) }},",
            path = format!("/{name}"),
            ct = content_type(name),
            etag = hash,
            imm = immutable == "1",
            raw = file.display().to_string(),
            gz = format!("{}.gz", file.display()),
            br = format!("{}.br", file.display()),
        );
    }
    code.push_str("];\n");
    code
}
