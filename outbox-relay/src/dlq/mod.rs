//! `outbox-relay dlq …`: the SRE's view of the dead letters, and the way to
//! put them back (`replay`) or set them aside (`discard`).
mod args;
mod output;

use crate::{
    configuration::Settings,
    dead_letters::{
        replay::{Outcome, Replayed, Replayer},
        store,
    },
};
use args::{Command, Options};
use sqlx::PgPool;

pub const HELP: &str = "\
outbox-relay dlq <command> [options]

Commands:
  stats                    counts by queue, event type, failure fingerprint and status,
                           with the oldest and newest of each group
  list [IDS] [filters]     dead letters, newest first (at most --limit, default 50)
  show ID                  one dead letter: route, failure history, replays and
                           discards, headers and body
  replay [IDS] [filters]   republish the original messages (same message_id, body and
                           headers, plus x-replay-count) to their original exchange and
                           routing key, with confirms; marks them replayed
      --dry-run            print what would be replayed, change nothing
      --rate N/s           at most N messages per second
      --yes                needed to replay more than dead_letters.confirm_above letters
      --all                every pending letter (when no IDs or filters are given)
      --actor NAME         who replays, for the audit trail (default: $USER)
  discard [IDS] [filters] --reason TEXT
                           set letters aside; they stay for audit until retention
                           (dead_letters.retention_days) deletes them
                           (--dry-run, --yes, --all, --actor as for replay; here
                           --failure-reason filters by failure reason)

Filters (list, replay, discard; replay and discard act on pending letters only):
  --queue Q                dead-letter queue, e.g. image-service.post-events.dlq
  --type T                 event type, e.g. post.created
  --reason TEXT            failure reason contains TEXT (alias --failure-reason)
  --reason-regex RE        failure reason matches the regular expression RE
  --fingerprint F          failure fingerprint (from stats)
  --since T, --until T     received from T / before T: RFC 3339, YYYY-MM-DD, or an age
                           such as 30m, 6h, 7d
  --aggregate UUID         events of one aggregate
  --status S               pending, replayed or discarded
  --limit N                at most N letters
  --json                   JSON lines instead of a table (every command)

Exit status: 0 done, 1 nothing matched, 2 error or refused, 3 some letters were not
replayed (returned, failed or skipped: see the output).
Reads the relay's settings (dead_letters.*, amqp.url; see outbox-relay --help).";

/// Exit status when a replay left some letters pending.
const PARTIAL: i32 = 3;

/// Runs a `dlq` command; returns the exit status.
pub async fn run(settings: &Settings, argv: &[String]) -> i32 {
    if argv.is_empty() || argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return if argv.is_empty() { 2 } else { 0 };
    }
    let Some(command) = Command::parse(&argv[0]) else {
        eprintln!("dlq: unknown command `{}` (see dlq --help)", argv[0]);
        return 2;
    };
    let options = match args::parse(command, &argv[1..], chrono::Utc::now()) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("dlq: {e} (see dlq --help)");
            return 2;
        }
    };
    let pool = match PgPool::connect(&settings.dead_letters.database_url).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("dlq: cannot reach the relay database: {e}");
            return 2;
        }
    };
    if let Err(e) = crate::dead_letters::migrate(&pool).await {
        eprintln!("dlq: cannot prepare the relay database: {e}");
        return 2;
    }
    let outcome = match command {
        Command::Stats => stats(&pool, &options).await,
        Command::List => list(&pool, &options).await,
        Command::Show => show(&pool, &options).await,
        Command::Replay => replay(settings, &pool, &options).await,
        Command::Discard => discard(settings, &pool, &options).await,
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dlq: {e}");
            2
        }
    }
}

/// 0 when something was found, 1 when nothing was.
fn found(count: usize) -> i32 {
    if count == 0 {
        1
    } else {
        0
    }
}

fn database_error(e: sqlx::Error) -> String {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("2201B") => {
            format!("invalid --reason-regex: {}", db.message())
        }
        _ => format!("relay database: {e}"),
    }
}

async fn stats(pool: &PgPool, options: &Options) -> Result<i32, String> {
    let groups = store::stats(pool).await.map_err(database_error)?;
    if options.json {
        output::print_json_lines(&groups)?;
    } else {
        output::print_stats(&groups);
    }
    Ok(found(groups.len()))
}

async fn list(pool: &PgPool, options: &Options) -> Result<i32, String> {
    let letters = store::list(pool, &options.filter)
        .await
        .map_err(database_error)?;
    if options.json {
        output::print_json_lines(&letters)?;
    } else {
        output::print_list(&letters);
    }
    Ok(found(letters.len()))
}

async fn show(pool: &PgPool, options: &Options) -> Result<i32, String> {
    let id = options.filter.ids[0];
    let Some(letter) = store::get(pool, id).await.map_err(database_error)? else {
        eprintln!("dlq: no dead letter {id}");
        return Ok(1);
    };
    let actions = store::actions(pool, id).await.map_err(database_error)?;
    if options.json {
        println!("{}", letter.to_json(&actions));
    } else {
        output::print_show(&letter, &actions);
    }
    Ok(0)
}

/// The pending letters selected, after the `--yes` check.
async fn selection(
    settings: &Settings,
    pool: &PgPool,
    options: &Options,
    verb: &str,
) -> Result<Vec<i64>, String> {
    let ids = store::matching_ids(pool, &options.filter)
        .await
        .map_err(database_error)?;
    let limit = settings.dead_letters.confirm_above;
    if ids.len() as u64 > limit && !options.yes && !options.dry_run {
        return Err(format!(
            "{} pending dead letters match; add --yes to {verb} more than {limit} (or --dry-run to list them)",
            ids.len()
        ));
    }
    Ok(ids)
}

/// Prints what a dry run would touch.
async fn dry_run(pool: &PgPool, ids: &[i64], options: &Options) -> Result<i32, String> {
    let letters = store::listed(pool, ids).await.map_err(database_error)?;
    if options.json {
        output::print_json_lines(&letters)?;
    } else {
        output::print_list(&letters);
        println!(
            "dry run: {} dead letters would be affected; nothing changed",
            letters.len()
        );
    }
    Ok(found(letters.len()))
}

async fn replay(settings: &Settings, pool: &PgPool, options: &Options) -> Result<i32, String> {
    let ids = selection(settings, pool, options, "replay").await?;
    if options.dry_run || ids.is_empty() {
        return dry_run(pool, &ids, options).await;
    }
    let connection = infra::amqp::connect(&settings.amqp.url, "outbox-relay dlq replay")
        .await
        .map_err(|e| format!("cannot reach RabbitMQ: {e}"))?;
    let publisher = infra::amqp::Publisher::new(&connection)
        .await
        .map_err(|e| format!("RabbitMQ channel: {e}"))?;
    let replayer = Replayer {
        pool,
        publisher: &publisher,
        actor: args::actor(options),
        rate: options.rate,
    };
    if !options.json {
        println!(
            "{:<8}  {:<9}  {:<36}  {:<18}  DETAIL",
            "ID", "OUTCOME", "MESSAGE", "TYPE"
        );
    }
    let json = options.json;
    let result = replayer
        .replay(&ids, |r: &Replayed| {
            if json {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            } else {
                println!(
                    "{:<8}  {:<9}  {:<36}  {:<18}  {}",
                    r.id,
                    serde_json::to_value(r.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    output::or_dash(r.message_id.as_ref()),
                    output::or_dash(r.event_type.as_ref()),
                    r.detail.clone().unwrap_or_default()
                );
            }
        })
        .await;
    let _ = connection.close(200, "replay done").await;
    let done = result.map_err(|e| format!("{e:#}"))?;
    let published = done
        .iter()
        .filter(|r| r.outcome == Outcome::Published)
        .count();
    if !json {
        println!("replayed {published} of {} dead letters", done.len());
    }
    Ok(if published == done.len() { 0 } else { PARTIAL })
}

async fn discard(settings: &Settings, pool: &PgPool, options: &Options) -> Result<i32, String> {
    let ids = selection(settings, pool, options, "discard").await?;
    if options.dry_run || ids.is_empty() {
        return dry_run(pool, &ids, options).await;
    }
    let reason = options.discard_reason.as_deref().unwrap_or_default();
    let discarded = crate::dead_letters::discard(pool, &ids, &args::actor(options), reason)
        .await
        .map_err(database_error)?;
    if options.json {
        let lines: Vec<_> = discarded
            .iter()
            .map(|id| serde_json::json!({"id": id, "outcome": "discarded"}))
            .collect();
        output::print_json_lines(&lines)?;
    } else {
        println!(
            "discarded {} of {} dead letters",
            discarded.len(),
            ids.len()
        );
    }
    Ok(if discarded.len() == ids.len() {
        0
    } else {
        PARTIAL
    })
}
