//! `lastmile bench`: runs lastmile and its peers on the same load in the same run.

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct IngestArgs {}

pub enum BenchCommand {
    Ingest(IngestArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(_) => anyhow::bail!("the ingest benchmark is being written"),
    }
}
