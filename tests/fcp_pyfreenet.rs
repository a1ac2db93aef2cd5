//! Freenet's own tools against veil nodes: the command-line programs of the
//! PyPI package `pyfreenet3` 0.7.0 (fcpgenkey, fcpinvertkey, fcpput,
//! fcpget, fcpupload, freesitemgr), unmodified, pointed at the FCP servers of a `veil testnet up`
//! by `FCP_HOST`/`FCP_PORT`. `.ci/run` installs the package; under
//! `CI=true` its absence fails the test, elsewhere it is skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bytes, run_within, Down, KillOnDrop, VEIL};

/// The longest one tool may run.
const TOOL_DEADLINE: Duration = Duration::from_secs(120);

/// Where pip put pyfreenet3's scripts, if it is installed.
fn pyfreenet_scripts() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import fcp3, sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && dir.join("fcpput").exists()).then_some(dir)
}

fn tools() -> Option<PathBuf> {
    let found = pyfreenet_scripts();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "pyfreenet3 missing under CI: .ci/run must install it (pip install pyfreenet3==0.7.0)"
        );
        eprintln!(
            "skipping: pyfreenet3 is not installed (python3 -m pip install pyfreenet3==0.7.0)"
        );
    }
    found
}

/// One of pyfreenet's programs, run against the FCP server at `port`.
struct Tools {
    scripts: PathBuf,
    home: PathBuf,
}

impl Tools {
    fn run(&self, port: u16, tool: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("python3");
        cmd.arg(self.scripts.join(tool))
            .args(args)
            .env("FCP_HOST", "127.0.0.1")
            .env("FCP_PORT", port.to_string())
            .env("HOME", &self.home)
            .stdin(Stdio::null());
        run_within(&mut cmd, TOOL_DEADLINE)
    }

    /// Run `tool` with `input` on its stdin (through `sh`, as the tools'
    /// prompts read it), in `dir`.
    fn answer(&self, port: u16, dir: &Path, input: &str, tool: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("input=$1; script=$2; shift 2; printf \"$input\" | python3 \"$script\" \"$@\"")
            .arg("sh")
            .arg(input)
            .arg(self.scripts.join(tool))
            .args(args)
            .current_dir(dir)
            .env("FCP_HOST", "127.0.0.1")
            .env("FCP_PORT", port.to_string())
            .env("HOME", &self.home);
        run_within(&mut cmd, TOOL_DEADLINE)
    }

    /// Run and expect success; its stdout.
    fn ok(&self, port: u16, tool: &str, args: &[&str]) -> String {
        let out = self.run(port, tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }
}

/// Start `veil testnet up` on the lecture's six-node example; the FCP port
/// of each node by name.
fn testnet(dir: &Path) -> (KillOnDrop, Down, serde_json::Value) {
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("testnet/seed-a-f.toml");
    let child = Command::new(VEIL)
        .args(["testnet", "up", "--topology"])
        .arg(&topology)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn veil testnet up");
    let up = KillOnDrop::new(child);
    let down = Down(dir.to_path_buf());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(dir.join("testnet.json")).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v["ready"] == true {
                return (up, down, v);
            }
        }
        assert!(Instant::now() < deadline, "the testnet never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fcp_port(info: &serde_json::Value, node: &str) -> u16 {
    let addr = info["nodes"][node]["fcp"]
        .as_str()
        .unwrap_or_else(|| panic!("testnet.json gives {node} no fcp address"));
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Run `freesitemgr update` until the site's state file says its insert
/// is done; the site's request USK without its edition.
fn site_published(tools: &Tools, port: u16, dir: &Path, state: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(state).unwrap_or_default();
        if text.contains("updateInProgress = False") {
            let line = text
                .lines()
                .find(|l| l.starts_with("uriPub = "))
                .expect("the state file names the site's request URI");
            let uri = line.split('"').nth(1).unwrap();
            // USK@<key>,<crypto>/<site>/<edition>/
            let parts: Vec<&str> = uri.trim_end_matches('/').rsplitn(2, '/').collect();
            return parts[1].to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the site was never published:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
        let out = tools.answer(port, dir, "", "freesitemgr", &["update"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn pyfreenet_tools_work_against_veil_nodes() {
    let Some(scripts) = tools() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let tools = Tools { scripts, home };
    let (_up, _down, info) = testnet(&tmp.path().join("net"));
    let (a, d, f) = (
        fcp_port(&info, "A"),
        fcp_port(&info, "D"),
        fcp_port(&info, "F"),
    );

    // fcpgenkey: the request URI, then the insert URI.
    let keys = tools.ok(a, "fcpgenkey", &[]);
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines.len(), 2, "{keys}");
    let (public, private) = (lines[0].trim(), lines[1].trim());
    assert!(
        public.starts_with("SSK@") && public.ends_with('/'),
        "{public}"
    );
    assert!(
        private.starts_with("SSK@") && private.ends_with('/'),
        "{private}"
    );
    assert_ne!(public, private);

    // fcpinvertkey: the insert URI of a document gives its request URI.
    let inverted = tools.ok(a, "fcpinvertkey", &[&format!("{private}doc")]);
    assert_eq!(inverted.trim(), format!("{public}doc"));

    // fcpput --chkonly gives the URI the real insert gives; fcpget of it
    // through another node gives the same 5 MiB back.
    let big = tmp.path().join("big.bin");
    let data = bytes(5 << 20, 24);
    std::fs::write(&big, &data).unwrap();
    let big_s = big.to_str().unwrap();
    let started = Instant::now();
    let predicted = tools.ok(a, "fcpput", &["--chkonly", "CHK@", big_s]);
    let chk_only = started.elapsed();
    let started = Instant::now();
    let uri = tools.ok(a, "fcpput", &["CHK@", big_s]);
    let put = started.elapsed();
    assert!(uri.starts_with("CHK@"), "{uri}");
    assert_eq!(predicted, uri, "GetCHKOnly and the insert disagree");
    let back = tmp.path().join("big.out");
    let started = Instant::now();
    tools.ok(d, "fcpget", &[&uri, back.to_str().unwrap()]);
    let get = started.elapsed();
    assert!(std::fs::read(&back).unwrap() == data, "5 MiB differ");
    eprintln!("5 MiB: chkonly {chk_only:.1?}, fcpput {put:.1?} (A), fcpget {get:.1?} (D)");

    // An SSK document: put under the insert URI, got under the request URI
    // from a third node.
    let doc = tmp.path().join("doc.txt");
    std::fs::write(&doc, b"a signed document\n").unwrap();
    let ssk = tools.ok(
        a,
        "fcpput",
        &[&format!("{private}doc"), doc.to_str().unwrap()],
    );
    assert_eq!(ssk.trim(), format!("{public}doc"));
    let doc_back = tmp.path().join("doc.out");
    tools.ok(f, "fcpget", &[ssk.trim(), doc_back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&doc_back).unwrap(), b"a signed document\n");

    // A KSK: the name alone inserts and requests; the first insert owns
    // the name, a second with other content fails.
    let ksk = tools.ok(a, "fcpput", &["KSK@veil-fcp-test", doc.to_str().unwrap()]);
    assert_eq!(ksk.trim(), "KSK@veil-fcp-test");
    let ksk_back = tmp.path().join("ksk.out");
    tools.ok(
        d,
        "fcpget",
        &["KSK@veil-fcp-test", ksk_back.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(&ksk_back).unwrap(), b"a signed document\n");
    let other = tmp.path().join("other.txt");
    std::fs::write(&other, b"someone else").unwrap();
    let out = tools.run(a, "fcpput", &["KSK@veil-fcp-test", other.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "a second insert under a KSK succeeded"
    );

    // fcpupload -w: the node reads the file itself after TestDDA; the URI
    // names the file inside a one-file directory, as Freenet's does.
    let page = tmp.path().join("page.html");
    std::fs::write(&page, b"<p>from disk</p>").unwrap();
    let out = tools.ok(a, "fcpupload", &["-w", page.to_str().unwrap()]);
    let disk_uri = out.lines().last().unwrap_or_default().trim();
    let disk_uri = disk_uri.strip_prefix("freenet:").unwrap_or(disk_uri);
    assert!(
        disk_uri.starts_with("CHK@") && disk_uri.ends_with("/page.html"),
        "{out}"
    );
    let page_back = tmp.path().join("page.out");
    tools.ok(d, "fcpget", &[disk_uri, page_back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&page_back).unwrap(), b"<p>from disk</p>");

    // freesitemgr add and update of a three-file site, fetched as
    // USK@…/-1 from a third node.
    let site = tmp.path().join("sites").join("blog");
    std::fs::create_dir_all(site.join("img")).unwrap();
    let png = bytes(3000, 5);
    std::fs::write(site.join("index.html"), b"<h1>first</h1>").unwrap();
    std::fs::write(site.join("style.css"), b"h1 { color: red }").unwrap();
    std::fs::write(site.join("img/cat.png"), &png).unwrap();
    let conf = tools.home.join(".freesitemgr");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join(".config"),
        format!("fcpHost = '127.0.0.1'\nfcpPort = {a}\n"),
    )
    .unwrap();
    let sites = site.parent().unwrap();
    let out = tools.answer(
        a,
        sites,
        "\\n",
        "freesitemgr",
        &["add", site.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "freesitemgr add: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let usk = site_published(&tools, a, sites, &conf.join("blog"));
    let got = |path: &str| {
        let to = tmp.path().join("got");
        let _ = std::fs::remove_file(&to);
        tools.ok(
            f,
            "fcpget",
            &[&format!("{usk}/-1/{path}"), to.to_str().unwrap()],
        );
        std::fs::read(&to).unwrap()
    };
    assert_eq!(got("index.html"), b"<h1>first</h1>");
    assert_eq!(got("style.css"), b"h1 { color: red }");
    assert!(got("img/cat.png") == png, "img/cat.png differs");
    std::fs::write(site.join("index.html"), b"<h1>second</h1>").unwrap();
    let out = tools.answer(a, sites, "", "freesitemgr", &["update", "blog"]);
    assert!(
        out.status.success(),
        "freesitemgr update: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    site_published(&tools, a, sites, &conf.join("blog"));
    assert_eq!(got("index.html"), b"<h1>second</h1>");
    assert!(
        got("img/cat.png") == png,
        "img/cat.png differs after the update"
    );

    // A key nobody inserted: a non-zero exit and Freenet's "data not
    // found" code (13), within the node's search timeout.
    let missing = format!(
        "CHK@{},{}",
        "jocsz1rznb7GX6ZjPMAcQpwlE4gNPazhDOCyNcUmNro",
        "VSsL3e_BtuwQm1SJUa4U2xEwp2ZTzpTwY4M9oaWxM-Q"
    );
    let started = Instant::now();
    let out = tools.run(
        f,
        "fcpget",
        &[
            "-v",
            "-v",
            &missing,
            tmp.path().join("no").to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fcpget of a missing key succeeded");
    assert!(stderr.contains("NODE: Code=13"), "{stderr}");
    assert!(stderr.contains("Data not found"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
