//! Bundles the front-end libraries of the web pages (`/web` at the workspace root: htmx and its SSE
//! extension, ECharts, Leaflet, the Noto Sans SC font) with esbuild into `OUT_DIR/web`, gathers their
//! licences, and writes `OUT_DIR/web_assets.rs`, the table of embedded files `pages.rs` serves.
//!
//! - The packages come from npm with the committed `package-lock.json`; `npm ci` runs only when the
//!   lockfile changed since the last install (a stamp in `node_modules`).
//! - Outputs are written only when their bytes change, so an unchanged bundle recompiles nothing.
//! - Without npm the build stops with a message; `CIVICGRID_WEB_DIST` names a prebuilt bundle instead
//!   (a folder holding what this script would have put in `OUT_DIR/web`).

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The entry points esbuild bundles, from `web/src/`.
const ENTRIES: [&str; 7] = ["console.js", "cockpit.js", "map.js", "h5.js", "console.css", "cockpit.css", "fonts.css"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let web = manifest.join("../../web");
    println!("cargo:rerun-if-env-changed=CIVICGRID_WEB_DIST");
    let dist = match env::var_os("CIVICGRID_WEB_DIST") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => {
            for input in ["package.json", "package-lock.json", ".npmrc", "src"] {
                println!("cargo:rerun-if-changed={}", web.join(input).display());
            }
            install(&web);
            let staged = out_dir.join("web-staged");
            bundle(&web, &staged);
            fs::write(staged.join("licenses.json"), licences(&web)).expect("write licenses.json");
            staged
        }
    };
    let target = out_dir.join("web");
    let files = sync(&dist, &target);
    let mut table = String::from(
        "/// Embedded web files: name, content and entity tag (a hash of the content).\n\
         pub static WEB_ASSETS: &[(&str, &[u8], &str)] = &[\n",
    );
    for name in &files {
        let bytes = fs::read(target.join(name)).expect("read bundled file");
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?}), \"\\\"{:016x}\\\"\"),\n",
            target.join(name).display().to_string(),
            fnv1a(&bytes)
        ));
    }
    table.push_str("];\n");
    write_if_changed(&out_dir.join("web_assets.rs"), table.as_bytes());
}

/// `npm ci` unless `node_modules` was installed from this very lockfile.
fn install(web: &Path) {
    let lock = fs::read(web.join("package-lock.json")).expect("web/package-lock.json is committed");
    let stamp_path = web.join("node_modules/.civicgrid-lock-stamp");
    let stamp = format!("{:016x}", fnv1a(&lock));
    if fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        return;
    }
    let status = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(web).status();
    match status {
        Ok(s) if s.success() => write_if_changed(&stamp_path, stamp.as_bytes()),
        Ok(s) => panic!("`npm ci` in {} failed ({s}); the web bundle cannot be built", web.display()),
        Err(e) => panic!(
            "npm is needed to bundle the web pages' libraries ({e}). Install Node.js 20 with npm, or set \
             CIVICGRID_WEB_DIST to a folder with a prebuilt bundle."
        ),
    }
}

/// Runs esbuild into a fresh `staged` folder.
fn bundle(web: &Path, staged: &Path) {
    let _ = fs::remove_dir_all(staged);
    fs::create_dir_all(staged).expect("create the staging folder");
    let esbuild = web.join("node_modules/.bin/esbuild");
    let status = Command::new(&esbuild)
        .args(ENTRIES.iter().map(|e| format!("src/{e}")))
        .args([
            "--bundle",
            "--minify",
            "--target=es2020,chrome100",
            "--loader:.woff2=file",
            "--loader:.png=file",
            "--entry-names=[name]",
            "--asset-names=[name]-[hash]",
            "--legal-comments=none",
            "--log-level=warning",
        ])
        .arg(format!("--outdir={}", staged.display()))
        .current_dir(web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!("esbuild ({}) failed: {other:?}", esbuild.display()),
    }
}

/// The licences of every shipped package (the `dependencies` of `web/package.json`) as JSON: name,
/// version, licence identifier and the texts of its LICENSE and NOTICE files.
fn licences(web: &Path) -> Vec<u8> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(web.join("package.json")).expect("read web/package.json"))
            .expect("web/package.json is JSON");
    let deps = manifest["dependencies"].as_object().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for name in deps.keys() {
        let root = web.join("node_modules").join(name);
        let pkg: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join("package.json")).expect("installed package.json"))
                .expect("package.json is JSON");
        let mut texts = BTreeMap::new();
        for entry in fs::read_dir(&root).expect("package folder").flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let upper = file.to_uppercase();
            let named = upper.starts_with("LICENSE") || upper.starts_with("LICENCE") || upper.starts_with("NOTICE");
            if named && entry.path().is_file() {
                texts.insert(file, fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        assert!(!texts.is_empty(), "{name} ships no licence file");
        out.push(serde_json::json!({
            "name": name,
            "version": pkg["version"],
            // A package that does not name its licence in package.json has its text say it.
            "license": pkg["license"].as_str().unwrap_or("see the licence text"),
            "texts": texts,
        }));
    }
    serde_json::to_vec_pretty(&out).expect("licences as JSON")
}

/// Copies the files of `from` into `to` where their bytes differ, removes the ones `from` lacks, and
/// answers the names, sorted.
fn sync(from: &Path, to: &Path) -> Vec<String> {
    fs::create_dir_all(to).expect("create OUT_DIR/web");
    let mut names: Vec<String> = fs::read_dir(from)
        .unwrap_or_else(|e| panic!("read the web bundle {}: {e}", from.display()))
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        write_if_changed(&to.join(name), &fs::read(from.join(name)).expect("read bundled file"));
    }
    for stale in fs::read_dir(to).expect("read OUT_DIR/web").flatten() {
        if !names.contains(&stale.file_name().to_string_lossy().into_owned()) {
            let _ = fs::remove_file(stale.path());
        }
    }
    names
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if fs::read(path).ok().as_deref() != Some(bytes) {
        fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// FNV-1a, 64 bits: a content hash for entity tags and the install stamp.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
