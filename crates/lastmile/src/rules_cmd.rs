//! `lastmile rules check`: what a reload would do with the rules files, without a server.

use std::process::ExitCode;

use lastmile_rules::engine::{build, now_ms};
use lastmile_rules::{LoadError, RulesSource};

use crate::cli::{RulesArgs, RulesCommand};

pub fn run(args: RulesArgs) -> ExitCode {
    match args.command {
        RulesCommand::Check { files, config } => check(&files, config),
    }
}

fn load(
    files: &[std::path::PathBuf],
    config: Option<std::path::PathBuf>,
) -> Result<Vec<RulesSource>, LoadError> {
    let mut sources = match config {
        Some(c) => crate::config::rules_loader(Some(c))()?,
        None => Vec::new(),
    };
    for f in files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f)
            .map_err(|e| LoadError::in_file(&name, format!("cannot read: {e}")))?;
        sources.push(RulesSource::rules_file(name, text));
    }
    Ok(sources)
}

fn check(files: &[std::path::PathBuf], config: Option<std::path::PathBuf>) -> ExitCode {
    let sources = match load(files, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    // Compile first without tests so a failing test is reported with the others.
    let merged = match lastmile_rules::file::merge(&sources) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rs = match lastmile_rules::ruleset::RuleSet::compile(merged, 1, 0, now_ms()) {
        Ok(rs) => rs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = &rs.counts;
    println!("{}: valid", names.join(", "));
    println!("  relabel rules:        {}", c.relabel);
    println!(
        "  inheritance:          {} static, {} resource attributes",
        c.inherit_static, c.inherit_attributes
    );
    println!(
        "  cardinality:          deny {:?}, path labels {:?}, {} allow lists, max_series {}, per metric {}, {} metric budgets",
        c.deny_labels,
        c.path_labels,
        c.allow_lists,
        budget(c.max_series),
        budget(c.max_series_per_metric),
        c.metric_budgets
    );
    println!(
        "  naming contracts:     {}",
        c.naming
            .map_or("off".to_string(), |m| format!("{m:?}").to_lowercase())
    );
    println!(
        "  tail sampling:        {}",
        if c.sampling_policies.is_empty() {
            "off".to_string()
        } else {
            format!("policies {}", c.sampling_policies.join(", "))
        }
    );
    println!("  log rules:            {}", c.log_rules.len());
    if let Some(f) = rs.canary_fraction {
        println!(
            "  canary:               {}% of streams until promoted",
            f * 100.0
        );
    }
    let report = lastmile_rules::testing::run_tests(&rs);
    if report.results.is_empty() {
        println!("tests: none (add a `tests:` section to check the rules on examples)");
        return ExitCode::SUCCESS;
    }
    println!("tests:");
    for r in &report.results {
        if r.passed {
            println!("  ok    {} ({})", r.name, r.loc);
        } else {
            println!("  FAIL  {} ({}): {}", r.name, r.loc, r.message);
        }
    }
    let failed = report.failed();
    println!(
        "{} tests, {} passed, {} failed",
        report.results.len(),
        report.results.len() - failed,
        failed
    );
    // The same check a reload runs (tests included) must agree.
    debug_assert_eq!(build(&sources, 1, 0).is_ok(), failed == 0);
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn budget(n: usize) -> String {
    if n == 0 { "none".into() } else { n.to_string() }
}
