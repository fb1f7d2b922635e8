//! `lastmile query`: asks a server's Prometheus query API and prints a readable table.

use anyhow::{Context, bail};
use lastmile_model::duration::parse_duration;
use lastmile_model::time::parse_api_time;
use serde_json::Value;

use crate::cli::QueryArgs;

/// `now`, `now-1h`, Unix seconds or RFC 3339, as Unix seconds for the API.
fn resolve_time(s: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let ms = if s == "now" {
        now
    } else if let Some(back) = s.strip_prefix("now-") {
        now - parse_duration(back)?.as_millis() as i64
    } else {
        parse_api_time(s)?
    };
    Ok(format!("{}", ms as f64 / 1000.0))
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let mut form: Vec<(&str, String)> = vec![("query", args.expr.clone())];
    let url = match &args.range {
        Some(r) => {
            form.push(("start", resolve_time(&r[0])?));
            form.push(("end", resolve_time(&r[1])?));
            form.push(("step", r[2].clone()));
            format!("{base}/api/v1/query_range")
        }
        None => {
            if let Some(t) = &args.time {
                form.push(("time", resolve_time(t)?));
            }
            format!("{base}/api/v1/query")
        }
    };
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach {base} (start one with `lastmile serve`, or pass --server)")
        })?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    let body: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{url} answered {status} with a body that is not JSON"))?;
    if body["status"] != "success" {
        bail!(
            "{} ({}): {}",
            body["errorType"].as_str().unwrap_or("error"),
            status,
            body["error"].as_str().unwrap_or("unknown error")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body["data"])?);
        return Ok(());
    }
    print!("{}", render(&body["data"]));
    Ok(())
}

fn metric_text(m: &Value) -> String {
    let Some(obj) = m.as_object() else {
        return "{}".into();
    };
    let name = obj.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = obj
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
        .collect();
    format!("{name}{{{}}}", labels.join(", "))
}

fn time_text(t: &Value) -> String {
    let secs = t.as_f64().unwrap_or(0.0);
    let ms = (secs * 1000.0).round() as i64;
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000) / 1000;
    let (y, mo, d) = civil(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A table: one row per series (instant) or one block per series (range).
pub fn render(data: &Value) -> String {
    let empty = Vec::new();
    let result = &data["result"];
    match data["resultType"].as_str().unwrap_or("") {
        "scalar" | "string" => format!(
            "{}  @ {}\n",
            result[1].as_str().unwrap_or(""),
            time_text(&result[0])
        ),
        "vector" => {
            let rows: Vec<(String, String)> = result
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|r| {
                    (
                        metric_text(&r["metric"]),
                        r["value"][1].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
            let mut out = format!("{:width$}  VALUE\n", "SERIES");
            for (m, v) in &rows {
                out.push_str(&format!("{m:width$}  {v}\n"));
            }
            out.push_str(&format!("({} series)\n", rows.len()));
            out
        }
        "matrix" => {
            let series = result.as_array().unwrap_or(&empty);
            let mut out = String::new();
            for s in series {
                out.push_str(&metric_text(&s["metric"]));
                out.push('\n');
                for p in s["values"].as_array().unwrap_or(&empty) {
                    out.push_str(&format!(
                        "  {}  {}\n",
                        time_text(&p[0]),
                        p[1].as_str().unwrap_or("")
                    ));
                }
            }
            out.push_str(&format!("({} series)\n", series.len()));
            out
        }
        other => format!("unknown result type {other:?}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vectors_and_matrices() {
        let v: Value = serde_json::from_str(
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"api"},"value":[1700000000,"1"]}]}"#,
        )
        .unwrap();
        let t = render(&v);
        assert!(
            t.contains("up{job=\"api\"}  1") && t.contains("(1 series)"),
            "{t}"
        );
        let m: Value = serde_json::from_str(
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"2"]]}]}"#,
        )
        .unwrap();
        assert!(
            render(&m).contains("2023-11-14 22:13:20  2"),
            "{}",
            render(&m)
        );
    }

    #[test]
    fn relative_times() {
        let now: f64 = resolve_time("now").unwrap().parse().unwrap();
        let back: f64 = resolve_time("now-1h").unwrap().parse().unwrap();
        assert!((now - back - 3600.0).abs() < 5.0);
        assert!(resolve_time("yesterday").is_err());
    }
}
