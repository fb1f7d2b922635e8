//! Relabeling semantics checked against a real Prometheus (Debian's package): one
//! Prometheus scrapes the same fixture twice. Job `relabeled` applies
//! `metric_relabel_configs` itself; job `raw` is remote-written untouched to lastmile,
//! whose rules file holds the same steps. Both must end up with exactly the same series.
//! The steps use every action (replace with captures, keep, drop, keepequal, dropequal,
//! hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

/// The steps under test, indented for both configs.
const STEPS: &str = r#"
  - source_labels: [__name__]
    regex: 'fx_debug_.*'
    action: drop
  - source_labels: [method]
    regex: 'GET|POST'
    action: keep
  - source_labels: [path]
    regex: '/api/(v\d+)/.*'
    target_label: api_version
    replacement: '$1'
  - source_labels: [zone, rack]
    separator: '-'
    regex: '(.+)-(.+)'
    target_label: location
    replacement: '${2}@${1}'
  - source_labels: [kind, name]
    regex: '(\w+);(\w+)'
    target_label: '${1}_name'
    replacement: '$2'
  - source_labels: [Region]
    target_label: region
    action: lowercase
  - source_labels: [tier]
    target_label: tier_upper
    action: uppercase
  - source_labels: [instance, path]
    target_label: shard
    modulus: 8
    action: hashmod
  - regex: 'meta_(.+)'
    action: labelmap
    replacement: 'm_$1'
  - regex: 'meta_.*|Region|rack|kind|name'
    action: labeldrop
  - source_labels: [expected]
    target_label: actual
    action: keepequal
  - source_labels: [a]
    target_label: b
    action: dropequal
  - source_labels: [empty_me]
    regex: 'yes'
    target_label: tier
    replacement: ''
  - regex: '__name__|job|instance|method|path|api_version|location|.+_name|region|tier|tier_upper|shard|m_.+|expected|actual|a|b|code|le'
    action: labelkeep
  - source_labels: [__name__]
    regex: 'fx_(.*)'
    target_label: __name__
    replacement: 'fx_relabeled_$1'
"#;

/// Series chosen to hit every branch of the steps above. (`dropequal` drops a series
/// lacking both labels, "" being equal to "": so every series has `a` and `b`.)
const EXPOSITION: &str = r#"# TYPE fx_requests_total counter
fx_requests_total{method="GET",path="/api/v1/users",zone="eu",rack="r1",Region="EU-West",tier="gold",meta_team="pay",expected="x",actual="x",a="1",b="2",code="200",kind="svc",name="checkout"} 1
fx_requests_total{a="1",b="2",method="POST",path="/api/v2/orders",zone="us",Region="US",expected="x",actual="y"} 2
fx_requests_total{a="1",b="2",method="DELETE",path="/x"} 3
fx_requests_total{a="1",b="2",method="GET",path="/health",unlisted="gone",meta_owner="ops",meta_team="core"} 4
fx_requests_total{a="1",b="2",method="POST",path="/api/v10/x",tier="silver",empty_me="yes"} 5
fx_debug_cache_hits{a="1",b="2",method="GET"} 6
# TYPE fx_latency_seconds histogram
fx_latency_seconds_bucket{a="1",b="2",method="GET",le="0.1",meta_owner="o"} 7
fx_latency_seconds_bucket{a="1",b="2",method="GET",le="+Inf",meta_owner="o"} 8
fx_latency_seconds_sum{a="1",b="2",method="GET",meta_owner="o"} 9
fx_latency_seconds_count{a="1",b="2",method="GET",meta_owner="o"} 8
fx_other{method="GET",a="1",b="1"} 10
fx_other{method="GET",a="1",b="2",unknown="z",kind="db",name="orders"} 11
fx_other{a="1",b="2",method="post"} 12
"#;

struct Fixture {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fixture {
    fn start() -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fixture");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn);
                }
            }
        });
        Fixture {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{EXPOSITION}",
        EXPOSITION.len()
    )?;
    conn.flush()
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

#[test]
fn metric_relabel_configs_give_the_same_series_as_prometheus() {
    let Some(prom_bin) = require_peer("prometheus") else {
        return;
    };
    let fixture = Fixture::start();
    let dir = TestDir::new();
    // lastmile: the raw job arrives as `job="raw"`; the first step makes it look like the
    // relabeled job before the steps under test run. The guard's defaults are off so
    // only relabeling acts.
    let rules = format!(
        "cardinality:\n  deny_labels: []\n  path_labels: []\nmetric_relabel_configs:\n  - source_labels: [job]\n    regex: raw\n    target_label: job\n    replacement: relabeled\n{STEPS}"
    );
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let server = Lastmile::start_with_config(&dir, "rule_files: [rules.yml]\n");
    let prom_config = format!(
        r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: relabeled
    static_configs: [{{targets: ["{fx}"]}}]
    metric_relabel_configs:{steps}
  - job_name: raw
    static_configs: [{{targets: ["{fx}"]}}]
remote_write:
  - url: http://{lm}/api/v1/write
    write_relabel_configs:
      - source_labels: [job, __name__]
        regex: 'raw;fx_.*'
        action: keep
"#,
        fx = fixture.addr,
        lm = server.addr,
        steps = STEPS.replace("\n  ", "\n      "),
    );
    let prom = Peer::prometheus(&prom_bin, &prom_config, &[]);

    let from_prometheus = || -> BTreeSet<Labels> {
        let data = prom.api(&format!(
            "/api/v1/series?match[]={}",
            enc("{job=\"relabeled\"}")
        ));
        labels_list(&data)
            .into_iter()
            .filter(|l| !SYNTHETIC.contains(&l["__name__"].as_str()))
            .collect()
    };
    let from_lastmile =
        || -> BTreeSet<Labels> { server.series("{__name__=~\".+\"}").into_iter().collect() };
    // Both sides scrape on their own clock: wait until each has its complete set (the
    // fixture never changes, so the sets stop growing), then they must be equal.
    let (want, got) = wait_for(
        "both sides to hold the relabeled series",
        START_TIMEOUT,
        |last| {
            let want = from_prometheus();
            let got = from_lastmile();
            *last = format!("prometheus {} series, lastmile {}", want.len(), got.len());
            (want.len() >= 8 && want == got).then_some((want, got))
        },
    );
    assert_eq!(want, got);
    // The steps did something everywhere: spot checks against what Prometheus made.
    let names: BTreeSet<&str> = want.iter().map(|l| l["__name__"].as_str()).collect();
    assert!(
        names.iter().all(|n| n.starts_with("fx_relabeled_")),
        "{names:?}"
    );
    assert!(
        want.iter()
            .any(|l| l.get("location").is_some_and(|v| v == "r1@eu"))
    );
    assert!(
        want.iter()
            .any(|l| l.get("svc_name").is_some_and(|v| v == "checkout"))
    );
    assert!(want.iter().any(|l| l.contains_key("shard")));
    assert!(
        want.iter()
            .any(|l| l.get("m_team").is_some_and(|v| v == "core"))
    );
    assert!(!want.iter().any(|l| l["method"] == "DELETE"));
    assert!(!want.iter().any(|l| l.contains_key("unknown")));
    assert!(
        !want
            .iter()
            .any(|l| l.get("tier").is_some_and(|v| v == "silver"))
    );
    assert!(
        want.iter()
            .any(|l| l.get("tier").is_some_and(|v| v == "gold"))
    );
    eprintln!("{} series agree", want.len());
}
