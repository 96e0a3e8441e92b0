//! `outbox-relay dlq …`: the SRE's view of the dead letters.
use crate::{configuration::Settings, dead_letters::store};
use sqlx::PgPool;

pub const HELP: &str = "\
outbox-relay dlq <command> [options]

Commands:
  stats [--json]          counts by queue, event type, failure fingerprint and status,
                          with the oldest and newest of each group
  list [filters] [--json] dead letters, newest first
      --queue Q           only this dead-letter queue (e.g. image-service.post-events.dlq)
      --type T            only this event type
      --reason TEXT       reason contains TEXT
      --status S          pending, replayed or discarded
      --limit N           at most N rows (default 50)
  show ID [--json]        one dead letter: route, failure history, headers and body

Exit status: 0 when something was found, 1 when nothing matched, 2 on errors.
Reads the relay's settings (dead_letters.database_url; see outbox-relay --help).";

/// Runs a `dlq` command; returns the exit status.
pub async fn run(settings: &Settings, args: &[String]) -> i32 {
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return if args.is_empty() { 2 } else { 0 };
    }
    let pool = match PgPool::connect(&settings.dead_letters.database_url).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("dlq: cannot reach the relay database: {e}");
            return 2;
        }
    };
    let json = args.iter().any(|a| a == "--json");
    let outcome = match args[0].as_str() {
        "stats" => stats(&pool, json).await,
        "show" => match args.get(1).map(|id| id.parse::<i64>()) {
            Some(Ok(id)) => show(&pool, id, json).await,
            _ => Err("show needs a numeric ID (see dlq list)".into()),
        },
        "list" => match parse_filter(&args[1..]) {
            Ok(filter) => list(&pool, &filter, json).await,
            Err(e) => Err(e),
        },
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match outcome {
        Ok(0) => 1,
        Ok(_) => 0,
        Err(e) => {
            eprintln!("dlq: {e}");
            2
        }
    }
}

async fn stats(pool: &PgPool, json: bool) -> Result<usize, String> {
    let groups = store::stats(pool).await.map_err(|e| e.to_string())?;
    if json {
        for group in &groups {
            println!(
                "{}",
                serde_json::to_string(group).map_err(|e| e.to_string())?
            );
        }
    } else {
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                vec![
                    g.queue.clone(),
                    g.event_type.clone().unwrap_or_else(|| "-".into()),
                    g.status.clone(),
                    g.count.to_string(),
                    g.oldest.format("%Y-%m-%d %H:%M:%S").to_string(),
                    g.newest.format("%Y-%m-%d %H:%M:%S").to_string(),
                    g.fingerprint.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                "QUEUE",
                "TYPE",
                "STATUS",
                "COUNT",
                "OLDEST",
                "NEWEST",
                "FINGERPRINT",
            ],
            &rows,
        );
    }
    Ok(groups.len())
}

async fn list(pool: &PgPool, filter: &store::Filter, json: bool) -> Result<usize, String> {
    let rows = store::list(pool, filter).await.map_err(|e| e.to_string())?;
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row).map_err(|e| e.to_string())?);
        }
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.queue.clone(),
                    r.event_type.clone().unwrap_or_else(|| "-".into()),
                    r.aggregate_id
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.attempts
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.status.clone(),
                    r.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    r.reason.clone(),
                ]
            })
            .collect();
        print_table(
            &[
                "ID",
                "QUEUE",
                "TYPE",
                "AGGREGATE",
                "ATTEMPTS",
                "STATUS",
                "RECEIVED",
                "REASON",
            ],
            &table,
        );
    }
    Ok(rows.len())
}

async fn show(pool: &PgPool, id: i64, json: bool) -> Result<usize, String> {
    let Some(letter) = store::get(pool, id).await.map_err(|e| e.to_string())? else {
        return Ok(0);
    };
    // The body as JSON when it is JSON, else as text (lossy).
    let body = serde_json::from_slice::<serde_json::Value>(&letter.body)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|_| String::from_utf8_lossy(&letter.body).into_owned());
    if json {
        let mut value = serde_json::to_value(&letter).map_err(|e| e.to_string())?;
        value["body"] =
            serde_json::from_slice(&letter.body).unwrap_or_else(|_| body.clone().into());
        println!("{value}");
        return Ok(1);
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!("id:            {}", letter.id);
    println!("status:        {}", letter.status);
    println!("queue:         {}", letter.queue);
    println!("message id:    {}", or_dash(letter.message_id.clone()));
    println!("event type:    {}", or_dash(letter.event_type.clone()));
    println!(
        "aggregate:     {}",
        or_dash(letter.aggregate_id.map(|a| a.to_string()))
    );
    println!(
        "route:         {} / {}",
        or_dash(letter.original_exchange.clone()),
        or_dash(letter.original_routing_key.clone())
    );
    println!("consumer:      {}", or_dash(letter.consumer.clone()));
    println!(
        "attempts:      {}",
        or_dash(letter.attempts.map(|a| a.to_string()))
    );
    println!(
        "first failure: {}",
        or_dash(letter.first_failed_at.map(|t| t.to_rfc3339()))
    );
    println!(
        "last failure:  {}",
        or_dash(letter.last_failed_at.map(|t| t.to_rfc3339()))
    );
    println!("received:      {}", letter.received_at.to_rfc3339());
    println!("reason:        {}", letter.reason);
    println!("fingerprint:   {}", letter.fingerprint);
    println!(
        "headers:\n{}",
        serde_json::to_string_pretty(&letter.headers).unwrap_or_default()
    );
    println!("body:\n{body}");
    Ok(1)
}

fn parse_filter(args: &[String]) -> Result<store::Filter, String> {
    let mut filter = store::Filter {
        limit: 50,
        ..Default::default()
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--queue" => filter.queue = Some(value()?),
            "--type" => filter.event_type = Some(value()?),
            "--reason" => filter.reason = Some(value()?),
            "--status" => {
                let status = value()?;
                if !["pending", "replayed", "discarded"].contains(&status.as_str()) {
                    return Err(format!(
                        "--status must be pending, replayed or discarded, not `{status}`"
                    ));
                }
                filter.status = Some(status);
            }
            "--limit" => {
                filter.limit = value()?
                    .parse()
                    .map_err(|_| "--limit needs a number".to_owned())?
            }
            "--json" => {}
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(filter)
}

/// Prints rows in aligned columns; the last column is not padded.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<width$}", width = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(header.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_ones_are_refused() {
        let args: Vec<String> = ["--queue", "q.dlq", "--status", "pending", "--limit", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let filter = parse_filter(&args).unwrap();
        assert_eq!((filter.queue.as_deref(), filter.limit), (Some("q.dlq"), 5));
        assert!(parse_filter(&["--status".into(), "gone".into()]).is_err());
        assert!(parse_filter(&["--limit".into()]).is_err());
    }
}
