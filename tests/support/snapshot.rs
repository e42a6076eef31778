//! A run folder as a map from relative path to contents, with what differs between two runs of
//! the same command (timings, the folder's own path) taken out — so runs made differently (killed
//! and resumed, sharded over processes) can be compared with the uninterrupted one, file by file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// JSON fields that measure time, not results: they differ between any two runs.
const VOLATILE_FIELDS: [&str; 3] = ["seconds", "step_seconds", "tokens_per_second"];

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files.push(p.clone());
            walk(&p, files);
        } else {
            files.push(p);
        }
    }
}

pub fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    walk(dir, &mut v);
    v.sort();
    v
}

fn strip_volatile(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for k in VOLATILE_FIELDS {
                m.remove(k);
            }
            m.values_mut().for_each(strip_volatile);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

/// The run folder's files (relative path → contents), with timings taken out of JSON and the
/// folder's own path replaced, so two runs of the same command compare equal.
pub fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for p in entries(root) {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            // Folders count too: an empty one left behind is a difference.
            out.insert(format!("{rel}/"), Vec::new());
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let normalise_json = |t: &str| {
            let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
            strip_volatile(&mut v);
            serde_json::to_string_pretty(&v).unwrap()
        };
        let content = match p.extension().and_then(|e| e.to_str()) {
            Some("json") | Some("jsonl") | Some("md") | Some("svg") => {
                let t = String::from_utf8(bytes).unwrap().replace(root.to_str().unwrap(), "<run>");
                match p.extension().unwrap().to_str().unwrap() {
                    "json" => normalise_json(&t),
                    "jsonl" => t.lines().map(normalise_json).collect::<Vec<_>>().join("\n"),
                    _ => t,
                }
                .into_bytes()
            }
            _ => bytes,
        };
        out.insert(rel, content);
    }
    out
}

/// What differs between two snapshots, one line per file.
pub fn differences(want: &BTreeMap<String, Vec<u8>>, got: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => d.push(format!("{k}: missing")),
            Some(g) if g != v => {
                let (a, b) = (String::from_utf8_lossy(v), String::from_utf8_lossy(g));
                let line = a.lines().zip(b.lines()).find(|(x, y)| x != y);
                d.push(match line {
                    Some((x, y)) if !k.ends_with(".safetensors") => {
                        let cut = |s: &str| s.chars().take(160).collect::<String>();
                        format!("{k}: `{}` became `{}`", cut(x), cut(y))
                    }
                    _ => format!("{k}: differs ({} vs {} bytes)", v.len(), g.len()),
                });
            }
            _ => {}
        }
    }
    d.extend(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("{k}: not in the uninterrupted run")));
    d
}
