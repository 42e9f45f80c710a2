//! The report and every chart rendered by a real browser (headless Chromium, as Debian packages
//! it; `.ci/run` installs it): no console message and no XML error page, the DOM text holds the
//! plan's and the fleet's figures, and a screenshot has the asked-for size and shows the charts'
//! colours (pixels sampled by python3's zlib; the screenshot stays in a temporary folder).
//!
//! Without Chromium the test FAILS: set `KLEIN_SKIP_BROWSER=1` to skip it on purpose (it then
//! says so on stderr). `KLEIN_CHROMIUM` names another binary.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::Dir;

/// The Chromium binary, or `None` when the test is skipped on purpose.
fn chromium() -> Option<PathBuf> {
    if std::env::var_os("KLEIN_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("KLEIN_SKIP_BROWSER=1: the browser test is skipped");
        return None;
    }
    let path = std::env::var_os("KLEIN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: install it (`apt-get install -y chromium`, as .ci/run does), point \
KLEIN_CHROMIUM at a Chromium, or set KLEIN_SKIP_BROWSER=1 to skip this test on purpose",
        path.display()
    );
    Some(path)
}

/// What a headless run of `page` gave: the DOM (or nothing) and the browser's log.
struct Rendered {
    dom: String,
    log: String,
}

/// Runs Chromium headless on `page` with a fresh profile: `--dump-dom`, or `--screenshot=png`.
fn render(
    chrome: &Path,
    dir: &Path,
    page: &Path,
    screenshot: Option<(&Path, u32, u32)>,
) -> Rendered {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let mut cmd = Command::new(chrome);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some((png, w, h)) => {
            cmd.arg(format!("--screenshot={}", png.display()))
                .arg(format!("--window-size={w},{h}"));
        }
        None => {
            cmd.arg("--dump-dom");
        }
    }
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    // Output into files (a DOM dump is larger than a pipe holds), the run bounded in time.
    let (out_path, err_path) = (profile.path().join("stdout"), profile.path().join("stderr"));
    let mut child = cmd
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chrome.display()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium ran longer than 120 s on {url}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = util::Output {
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
        code: status.code().unwrap_or(-1),
    };
    assert_eq!(out.code, 0, "chromium on {url}: {}", out.stderr);
    let log = out.stderr;
    // The pages carry no script: any console message means the browser found something wrong.
    for line in log.lines() {
        assert!(
            !line.contains(":CONSOLE") && !line.contains("Uncaught"),
            "{url}: {line}"
        );
    }
    Rendered {
        dom: out.stdout,
        log,
    }
}

/// Width and height from a PNG's IHDR.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// How many pixels of the screenshot are within 24 of `rgb` in every channel (python3's zlib
/// decodes it; missing python3 fails the test like the export tests).
fn pixels_near(png: &Path, rgb: (u8, u8, u8)) -> u64 {
    const DECODE: &str = r#"
import struct, sys, zlib
d = open(sys.argv[1], 'rb').read()
w, h, depth, ctype = struct.unpack('>IIBB', d[16:26])
assert depth == 8 and ctype in (2, 6), (depth, ctype)
bpp = 3 if ctype == 2 else 4
i, idat = 8, b''
while i < len(d):
    n, = struct.unpack('>I', d[i:i+4]); kind = d[i+4:i+8]
    if kind == b'IDAT': idat += d[i+8:i+8+n]
    i += 12 + n
raw = zlib.decompress(idat); stride = w * bpp
prev = bytearray(stride); r, g, b = (int(x) for x in sys.argv[2:5]); hits = 0; p = 0
for y in range(h):
    f = raw[p]; line = bytearray(raw[p+1:p+1+stride]); p += 1 + stride
    for x in range(stride):
        a = line[x-bpp] if x >= bpp else 0; up = prev[x]; c = prev[x-bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + up) & 255
        elif f == 3: line[x] = (line[x] + (a + up) // 2) & 255
        elif f == 4:
            q = a + up - c; pa, pb, pc = abs(q-a), abs(q-up), abs(q-c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        if abs(line[x]-r) <= 24 and abs(line[x+1]-g) <= 24 and abs(line[x+2]-b) <= 24: hits += 1
    prev = line
print(hits)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(DECODE)
        .arg(png)
        .args([rgb.0.to_string(), rgb.1.to_string(), rgb.2.to_string()])
        .output()
        .expect("python3 is needed to sample the screenshot's pixels (this test fails without it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Every figure of `figures` is somewhere in `text`.
fn holds_all(what: &str, text: &str, figures: &[String]) {
    for f in figures {
        assert!(
            text.contains(f.as_str()),
            "{what}: '{f}' is not in the rendered page"
        );
    }
}

#[test]
fn the_report_and_every_chart_render_in_chromium() {
    let Some(chrome) = chromium() else { return };
    let dir = Dir::new("browser");
    for f in [
        "specs/prod.yaml",
        "specs/fleet.yaml",
        "specs/estimate-contract.yaml",
        "specs/throughput-batch.yaml",
        "specs/stage-pools-sizes.yaml",
    ] {
        dir.copy_from_repo(f);
    }
    let d = dir.path();
    // The reports, and the figures their DOM must hold (from the JSON of plan and fleet).
    for (spec, fleet) in [
        ("prod.yaml", true),
        ("fleet.yaml", true),
        ("stage-pools-sizes.yaml", true),
    ] {
        let html = format!("{spec}.html");
        dir.command(["report", spec, "-o", &html])
            .run()
            .expect_code(0);
        let plan = dir.command(["plan", spec, "--format", "json"]).run().json();
        let chosen = &plan["chosen"];
        let mut figures = vec![
            format!("${:.2}/h", chosen["cost_per_hour"].as_f64().unwrap()),
            format!("${:.3}", chosen["cost_per_1000_images"].as_f64().unwrap()),
            format!("{} x {}", chosen["gpus"], chosen["gpu"].as_str().unwrap()),
        ];
        for c in chosen["classes"].as_array().unwrap() {
            figures.push(c["size"].as_str().unwrap().to_string());
        }
        if fleet {
            let f = dir
                .command(["fleet", spec, "--format", "json"])
                .run()
                .json();
            if let Some(t) = f["total_usd_per_hour"].as_f64() {
                figures.push(format!("${t:.2}/h"));
            }
            for p in f["pools"].as_array().unwrap() {
                figures.push(format!("{} x {}", p["count"], p["gpu"].as_str().unwrap()));
            }
        }
        let page = d.join(&html);
        let r = render(&chrome, d, &page, None);
        let text = util::html_text(&r.dom);
        holds_all(spec, &text, &figures);
        assert!(r.dom.contains("<svg"), "{spec}: no inline chart");
        let _ = r.log;
        // A screenshot of the top of the report: its size as asked, the charts' blue drawn.
        let png = d.join(format!("{spec}.png"));
        render(&chrome, d, &page, Some((&png, 1280, 2400)));
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(png_size(&bytes), (1280, 2400), "{spec}");
        assert!(
            pixels_near(&png, (0x1f, 0x77, 0xb4)) > 500,
            "{spec}: no chart colour on the page"
        );
    }
    // Each SVG alone: fleet --svg, sweep --svg (a key varied, and a plan's front).
    let charts: [(&str, Vec<&str>); 3] = [
        (
            "fleet.svg",
            vec!["fleet", "fleet.yaml", "--svg", "fleet.svg"],
        ),
        (
            "sweep.svg",
            vec![
                "sweep",
                "estimate-contract.yaml",
                "--vary",
                "weights=bf16,fp8",
                "--vary",
                "gpu=h200,rtx-4090",
                "--svg",
                "sweep.svg",
            ],
        ),
        (
            "front.svg",
            vec!["sweep", "throughput-batch.yaml", "--svg", "front.svg"],
        ),
    ];
    for (file, args) in charts {
        let out = dir.command(&args).run();
        assert!(out.code == 0 || out.code == 1, "{args:?}: {}", out.stderr);
        let page = d.join(file);
        let svg = std::fs::read_to_string(&page).unwrap();
        let r = render(&chrome, d, &page, None);
        // An SVG Chromium cannot parse comes back as an error page.
        assert!(
            !r.dom.contains("This page contains the following errors"),
            "{file}: {}",
            r.dom
        );
        // Every text of the file is in the DOM the browser built.
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| {
                n.descendants()
                    .filter(|t| t.is_text())
                    .filter_map(|t| t.text())
                    .collect()
            })
            .collect();
        holds_all(file, &util::html_text(&r.dom), &texts);
        let png = d.join(format!("{file}.png"));
        render(&chrome, d, &page, Some((&png, 1200, 800)));
        assert_eq!(
            png_size(&std::fs::read(&png).unwrap()),
            (1200, 800),
            "{file}"
        );
        assert!(
            pixels_near(&png, (0x1f, 0x77, 0xb4)) > 50,
            "{file}: no chart colour drawn"
        );
    }
}
