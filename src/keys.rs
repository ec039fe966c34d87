//! `switchyard keys …` and the admin key `dev` creates on first start. Keys are printed on a
//! line of their own on stdout (so scripts can capture them); everything else goes to stderr.
#![allow(clippy::print_stdout)]

use std::{io::Write, path::Path, time::Duration};

use anyhow::{Context, bail};
use chrono::Utc;
use switchyard_shared::{
    access::NewApiKey,
    access::{Environment, RawKey, Scope, scopes_to_text},
    audit::{Actor, AuditEntry},
    store::Store,
    tenants::Owner,
};

use crate::cli::KeysCommand;

pub async fn run(command: KeysCommand, store: &Store) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, scope, environment, expires_in, rate_limit, tenant } => {
            let scopes = scope
                .iter()
                .map(|s| s.parse::<Scope>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if scopes.is_empty() {
                bail!("give at least one --scope (known: {})", known_scopes());
            }
            let env: Environment = environment.parse().map_err(anyhow::Error::msg)?;
            let expires_at = match expires_in.as_deref() {
                Some(s) => Some(Utc::now() + chrono::Duration::from_std(parse_duration(s)?)?),
                None => None,
            };
            let owner = match tenant {
                None => Owner::Platform,
                Some(id) => match store.tenant(&id).await? {
                    Some(t) if t.deleted_at.is_none() => Owner::Tenant(t.id),
                    _ => bail!("no live tenant with id {id}"),
                },
            };
            if let Some(s) = scopes.iter().find(|s| s.platform_only() && !owner.is_platform()) {
                bail!("`{s}` is for platform keys only; a tenant's key cannot hold it");
            }
            let spec = KeySpec { name: &name, scopes: &scopes, env, expires_at, rate_limit, owner };
            let raw = create(store, spec, "cli").await?;
            eprintln!("created API key {name:?} ({}); it is shown once:", raw.display_prefix());
            println!("{}", raw.expose());
        }
        KeysCommand::List => {
            let (_, rows) = store.list_api_keys(None, true, 0, 10_000).await?;
            let now = Utc::now();
            for r in rows {
                println!(
                    "{}  {:<14} {:<8} {:<20} {:<12} {}  used {}",
                    r.id,
                    r.prefix,
                    r.status_at(now).as_str(),
                    r.name,
                    r.tenant_id,
                    r.scopes,
                    r.usage_count
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let audit =
                AuditEntry::new(&cli_actor(), &Owner::Platform, "api_key.deleted", "api_key")
                    .target(id.as_str());
            if !store.delete_api_key(&id, Utc::now(), &audit).await? {
                bail!("no API key with id {id}");
            }
            eprintln!("revoked {id} (API processes drop it within SWITCHYARD_AUTH_CACHE_TTL_SECS)");
        }
    }
    Ok(())
}

fn known_scopes() -> String {
    Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

struct KeySpec<'a> {
    name: &'a str,
    scopes: &'a [Scope],
    env: Environment,
    expires_at: Option<chrono::DateTime<Utc>>,
    rate_limit: Option<i64>,
    owner: Owner,
}

async fn create(store: &Store, spec: KeySpec<'_>, created_by: &str) -> anyhow::Result<RawKey> {
    let KeySpec { name, scopes, env, expires_at, rate_limit, owner } = spec;
    let raw = RawKey::generate(env);
    let id = switchyard_shared::ids::ApiKeyId::generate();
    let audit = AuditEntry::new(&cli_actor(), &owner, "api_key.created", "api_key")
        .target(id.as_str())
        .changed(&[("name", true), ("scopes", true), ("environment", true)]);
    store
        .insert_api_key(
            &NewApiKey {
                id,
                name: name.to_owned(),
                key_hash: raw.digest(),
                prefix: raw.display_prefix().to_owned(),
                scopes: scopes_to_text(scopes),
                environment: env.as_str().to_owned(),
                rate_limit_per_minute: rate_limit,
                expires_at,
                created_by: Some(created_by.to_owned()),
                tenant_id: owner,
                metadata: "{}".to_owned(),
                quotas: Default::default(),
            },
            Utc::now(),
            &audit,
        )
        .await
        .context("storing the key")?;
    Ok(raw)
}

/// Changes made from the command line (no key, no address) in the audit log.
fn cli_actor() -> Actor {
    Actor { user_agent: Some("switchyard-cli".into()), ..Actor::default() }
}

/// `90d`, `12h`, `30m`, `45s`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 =
        num.parse().with_context(|| format!("{s:?}: expected a number and d, h, m or s"))?;
    let secs = match unit {
        "d" => n * 86_400,
        "h" => n * 3_600,
        "m" => n * 60,
        "s" => n,
        _ => bail!("{s:?}: expected a number and d, h, m or s"),
    };
    if secs == 0 {
        bail!("{s:?}: must be more than zero");
    }
    Ok(Duration::from_secs(secs))
}

/// On the first start of `dev` (no key at all, no bootstrap key), creates an admin key,
/// prints it once and writes it to `<data dir>/admin.key` (mode 0600) for scripts.
pub async fn dev_admin_key(
    store: &Store,
    data_dir: &Path,
    bootstrap_set: bool,
) -> anyhow::Result<()> {
    let path = data_dir.join("admin.key");
    if bootstrap_set || store.count_api_keys().await? > 0 {
        if path.exists() {
            tracing::info!(path = %path.display(), "the dev admin key is in this file");
        }
        return Ok(());
    }
    let spec = KeySpec {
        name: "dev admin",
        scopes: &[Scope::Admin],
        env: Environment::Test,
        expires_at: None,
        rate_limit: None,
        owner: Owner::Platform,
    };
    let raw = create(store, spec, "dev").await?;
    write_private(&path, raw.expose())?;
    eprintln!(
        "\nAn admin API key was created for this data dir. It is shown once here and kept in {}:",
        path.display()
    );
    println!("{}", raw.expose());
    eprintln!("Use it as `Authorization: Bearer <key>` (or the Authorize button at /docs).\n");
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{contents}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap().as_secs(), 90 * 86_400);
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 43_200);
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("d").is_err());
    }
}
