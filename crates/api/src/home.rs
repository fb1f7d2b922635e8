//! The landing page: what this lastmile holds and where to look next.

use axum::extract::State;
use axum::response::Html;

use crate::AppState;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub async fn page(State(st): State<AppState>) -> Html<String> {
    let db = st.db.clone();
    let status = tokio::task::spawn_blocking(move || db.status(15))
        .await
        .ok();
    let mut rows = String::new();
    let (mut series, mut samples, mut blocks) = (0, 0, 0);
    if let Some(s) = &status {
        series = s.head.num_series;
        samples = s.head.num_samples;
        blocks = s.blocks.len();
        for (name, n) in &s.cardinality.series_count_by_metric_name {
            let link = format!("/api/v1/series?match[]={}", escape(name));
            rows.push_str(&format!(
                "<tr><td><a href=\"{link}\">{}</a></td><td class=n>{n}</td></tr>",
                escape(name)
            ));
        }
    }
    let p = crate::process::process_stats();
    Html(format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width,initial-scale=1">
<title>lastmile</title><style>
:root{{color-scheme:light dark;--fg:#1d2330;--bg:#fbfbfd;--mut:#667;--acc:#3b6ef5;--line:#e3e5ec}}
@media(prefers-color-scheme:dark){{:root{{--fg:#e6e8ee;--bg:#14161c;--mut:#99a;--acc:#7d9bff;--line:#2a2e38}}}}
body{{font:15px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg);max-width:920px;margin:2rem auto;padding:0 1rem}}
h1{{font-size:1.6rem;margin:0}} .sub{{color:var(--mut);margin:.2rem 0 1.5rem}}
.cards{{display:grid;grid-template-columns:repeat(4,1fr);gap:.8rem;margin-bottom:1.5rem}}
.card{{border:1px solid var(--line);border-radius:10px;padding:.8rem 1rem}} .card b{{display:block;font-size:1.4rem}}
table{{width:100%;border-collapse:collapse}} td,th{{padding:.35rem .5rem;border-bottom:1px solid var(--line);text-align:left}}
.n{{text-align:right;font-variant-numeric:tabular-nums}} a{{color:var(--acc);text-decoration:none}} code{{font-size:.9em}}
</style></head><body>
<h1>lastmile</h1><p class=sub>version {version} · metrics store, Prometheus-compatible API</p>
<div class=cards><div class=card><b>{series}</b>active series</div><div class=card><b>{samples}</b>samples in memory</div>
<div class=card><b>{blocks}</b>blocks on disk</div><div class=card><b>{rss:.0} MiB</b>resident memory</div></div>
<h2>Top metrics by series</h2><table><tr><th>metric</th><th class=n>series</th></tr>{rows}</table>
<h2>Endpoints</h2><ul>
<li><code>POST /api/v1/write</code> — Prometheus remote write (snappy or zstd, optional <code>X-Content-CRC32C</code>)</li>
<li><a href="/api/v1/labels"><code>/api/v1/labels</code></a>, <code>/api/v1/label/&lt;name&gt;/values</code>, <code>/api/v1/series?match[]=…</code></li>
<li><a href="/api/v1/status/tsdb"><code>/api/v1/status/tsdb</code></a> — cardinality, <a href="/api/v1/metadata"><code>/api/v1/metadata</code></a>, <code>/api/v1/query_exemplars</code></li>
<li><code>/api/v1/export?match[]=…</code> — raw samples as JSON lines</li>
<li><a href="/metrics"><code>/metrics</code></a> — lastmile's own metrics</li></ul>
</body></html>"#,
        version = st.version,
        rss = p.rss_bytes as f64 / (1 << 20) as f64,
    ))
}
