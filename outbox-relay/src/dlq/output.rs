//! How `dlq` prints: aligned tables by default, JSON lines with `--json`.
use crate::dead_letters::store;
use serde::Serialize;

/// Prints rows in aligned columns; the last column is not padded.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
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

/// One JSON line per item.
pub fn print_json_lines<T: Serialize>(items: &[T]) -> Result<(), String> {
    for item in items {
        println!(
            "{}",
            serde_json::to_string(item).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn print_stats(groups: &[store::Group]) {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.queue.clone(),
                or_dash(g.event_type.as_ref()),
                g.status.clone(),
                g.count.to_string(),
                time(g.oldest),
                time(g.newest),
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

pub fn print_list(letters: &[store::Listed]) {
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.queue.clone(),
                or_dash(r.event_type.as_ref()),
                or_dash(r.aggregate_id),
                or_dash(r.attempts),
                r.status.clone(),
                time(r.received_at),
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
        &rows,
    );
}

/// The body as pretty JSON when it is JSON, else as (lossy) text.
pub fn body_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

pub fn print_show(letter: &store::Detail, actions: &[store::Action]) {
    println!("id:            {}", letter.id);
    println!("status:        {}", letter.status);
    println!("queue:         {}", letter.queue);
    println!("message id:    {}", or_dash(letter.message_id.as_ref()));
    println!("event type:    {}", or_dash(letter.event_type.as_ref()));
    println!("aggregate:     {}", or_dash(letter.aggregate_id));
    println!(
        "route:         {} / {}",
        or_dash(letter.original_exchange.as_ref()),
        or_dash(letter.original_routing_key.as_ref())
    );
    println!("consumer:      {}", or_dash(letter.consumer.as_ref()));
    println!("reason:        {}", letter.reason);
    println!("fingerprint:   {}", letter.fingerprint);
    println!("failures:");
    println!("  attempts:    {}", or_dash(letter.attempts));
    println!(
        "  first:       {}",
        or_dash(letter.first_failed_at.map(|t| t.to_rfc3339()))
    );
    println!(
        "  last:        {}",
        or_dash(letter.last_failed_at.map(|t| t.to_rfc3339()))
    );
    println!("  recorded:    {}", letter.received_at.to_rfc3339());
    if actions.is_empty() {
        println!("replays and discards: none");
    } else {
        println!("replays and discards:");
        let rows: Vec<Vec<String>> = actions
            .iter()
            .map(|a| {
                vec![
                    format!("  {}", a.started_at.to_rfc3339()),
                    a.action.clone(),
                    a.actor.clone(),
                    a.outcome.clone(),
                    a.reason
                        .clone()
                        .or_else(|| a.detail.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        print_table(
            &["  AT", "ACTION", "ACTOR", "OUTCOME", "REASON/DETAIL"],
            &rows,
        );
    }
    println!(
        "headers:\n{}",
        serde_json::to_string_pretty(&letter.headers).unwrap_or_default()
    );
    println!("body:\n{}", body_text(&letter.body));
}
