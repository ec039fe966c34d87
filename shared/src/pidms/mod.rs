//! PIDKey inventory: key normalisation, the shape of PIDKey's answers, and starting a run
//! (a check or a sync) as batches on the `pidms` queue.

mod store;

pub use store::{
    BatchRef, KeySearch, NewPidmsBatch, NewPidmsRun, PidmsBatch, PidmsKey, PidmsRun, ProductSummary,
};

use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    jobs::{Job, PidmsBatchJob},
    services::Services,
    store::StoreError,
};

/// A key without dashes, upper case: 25 characters of `[A-Z0-9]`.
pub fn normalise_key(raw: &str) -> Result<String, &'static str> {
    let key: String =
        raw.trim().chars().filter(|c| *c != '-').collect::<String>().to_ascii_uppercase();
    if key.is_empty() {
        return Err("empty");
    }
    if key.len() != 25 {
        return Err("a key has 25 letters and digits (dashes optional)");
    }
    if !key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return Err("a key has only letters A–Z and digits (dashes optional)");
    }
    Ok(key)
}

/// `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`.
pub fn with_dashes(key: &str) -> String {
    key.as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// A line of input that is not a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    /// The line as given (cut to 64 characters).
    pub value: String,
    pub message: String,
}

/// Splits pasted input (one key per line, CRLF or LF), normalises and dedupes the keys, and
/// reports every malformed non-empty line with its number.
pub fn parse_key_lines(input: &str) -> (Vec<String>, Vec<LineError>) {
    let mut keys = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for (i, line) in input.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match normalise_key(line) {
            Ok(k) => {
                if seen.insert(k.clone()) {
                    keys.push(k);
                }
            }
            Err(message) => errors.push(LineError {
                line: i + 1,
                value: line.chars().take(64).collect(),
                message: message.to_owned(),
            }),
        }
    }
    (keys, errors)
}

/// Numbers may come as numbers or as numeric strings; both are taken.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        F(f64),
        S(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        None => None,
        Some(N::I(i)) => Some(i),
        Some(N::F(f)) => Some(f as i64),
        Some(N::S(s)) => s.trim().parse().ok(),
    })
}

/// One key as PIDKey answers it; every field is stored as received.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PidkeyAnswer {
    pub keyname: String,
    #[serde(default)]
    pub keyname_with_dash: Option<String>,
    #[serde(default)]
    pub prd: Option<String>,
    #[serde(default)]
    pub eid: Option<String>,
    #[serde(default)]
    pub is_key_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub is_retail: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub remaining: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub blocked: Option<i64>,
    #[serde(default)]
    pub errorcode: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub had_occurred: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub invalid: Option<i64>,
    #[serde(default)]
    pub datetime_checked_done: Option<String>,
}

crate::text_enum! {
    /// What a run does (`pidms_runs.kind`): check the keys given, or sync stored ones.
    pub enum RunKind {
        Check = "check",
        Sync = "sync",
    }
}

crate::text_enum! {
    /// Where a run stands (`pidms_runs.status`): running → completed once every batch is
    /// done or failed.
    pub enum RunStatus {
        Running = "running",
        Completed = "completed",
    }
}

crate::text_enum! {
    /// Where a batch stands (`pidms_batches.status`): pending → done | failed.
    pub enum BatchStatus {
        Pending = "pending",
        Done = "done",
        Failed = "failed",
    }
}

/// Writes a run and its batches (write first) with `audit` (an API request's entry, its
/// target set here to the run), then enqueues one job per batch. Returns the run id. A run
/// with no keys is completed at once.
#[crate::boxed]
pub async fn start_run(
    services: &Services,
    kind: RunKind,
    keys: &[String],
    product_filter: Option<&str>,
    created_by: Option<&str>,
    audit: Option<crate::audit::AuditEntry>,
) -> Result<String, StoreError> {
    let run_id = crate::ids::pidms_run_id(kind);
    let audit = audit.map(|a| a.target(run_id.as_str()));
    let size = services.config.pidkey.batch_size.max(1);
    let batches: Vec<NewPidmsBatch> = keys
        .chunks(size)
        .enumerate()
        .map(|(i, chunk)| NewPidmsBatch {
            id: crate::ids::PidmsBatchId::generate(),
            seq: i as i64,
            keys: chunk.join("\n"),
        })
        .collect();
    let now = chrono::Utc::now();
    services
        .store
        .insert_pidms_run(
            &NewPidmsRun {
                id: &run_id,
                kind,
                product_filter,
                keys_total: keys.len() as i64,
                created_by,
                now,
            },
            &batches,
            audit.as_ref(),
        )
        .await?;
    let jobs: Vec<Job> = batches
        .iter()
        .map(|b| Job::PidmsBatch(PidmsBatchJob { batch_id: b.id.clone(), run_id: run_id.clone() }))
        .collect();
    if let Err(error) = services.queue.push_many(jobs).await {
        tracing::warn!(%error, %run_id, "batches written but not enqueued; the sweep will");
    }
    if batches.is_empty() {
        services.store.finish_pidms_run_if_done(&run_id, now).await?;
    }
    Ok(run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalised_deduped_and_bad_lines_numbered() {
        let input = "abcde-fghij-klmno-pqrst-uvwx1\r\n\n  ABCDEFGHIJKLMNOPQRSTUVWX1  \nshort\r\nABCDE-FGHIJ-KLMNO-PQRST-UVW!1\n";
        let (keys, errors) = parse_key_lines(input);
        assert_eq!(keys, vec!["ABCDEFGHIJKLMNOPQRSTUVWX1"]);
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].line, errors[0].value.as_str()), (4, "short"));
        assert_eq!(errors[1].line, 5);
        assert!(errors[1].message.contains("letters"));
        assert_eq!(with_dashes("ABCDEFGHIJKLMNOPQRSTUVWX1"), "ABCDE-FGHIJ-KLMNO-PQRST-UVWX1");
    }

    #[test]
    fn answers_take_numbers_as_numbers_or_strings() {
        let a: PidkeyAnswer = serde_json::from_str(
            r#"{"keyname":"K","prd":null,"remaining":"12","blocked":-1,"is_retail":2,"invalid":0}"#,
        )
        .unwrap();
        assert_eq!((a.remaining, a.blocked, a.prd), (Some(12), Some(-1), None));
    }
}
