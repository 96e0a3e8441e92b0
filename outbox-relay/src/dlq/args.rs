//! Command-line options of `dlq`: the shared filters and the options of
//! `replay` and `discard`.
use crate::dead_letters::filter::{parse_time, Filter, Status};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Stats,
    List,
    Show,
    Replay,
    Discard,
}

impl Command {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "stats" => Command::Stats,
            "list" => Command::List,
            "show" => Command::Show,
            "replay" => Command::Replay,
            "discard" => Command::Discard,
            _ => return None,
        })
    }
}

#[derive(Debug, Default)]
pub struct Options {
    pub filter: Filter,
    pub json: bool,
    pub dry_run: bool,
    /// Messages per second.
    pub rate: Option<f64>,
    pub yes: bool,
    pub all: bool,
    pub actor: Option<String>,
    /// Why letters are discarded.
    pub discard_reason: Option<String>,
}

/// Parses the options after the command name.
pub fn parse(command: Command, args: &[String], now: DateTime<Utc>) -> Result<Options, String> {
    let mut options = Options::default();
    let filter = &mut options.filter;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        let changes = matches!(command, Command::Replay | Command::Discard);
        match arg.as_str() {
            "--json" => options.json = true,
            "--queue" => filter.queue = Some(value()?),
            "--type" => filter.event_type = Some(value()?),
            "--reason" if command == Command::Discard => options.discard_reason = Some(value()?),
            "--reason" | "--failure-reason" => filter.reason = Some(value()?),
            "--reason-regex" => filter.reason_regex = Some(value()?),
            "--fingerprint" => filter.fingerprint = Some(value()?),
            "--since" => filter.since = Some(parse_time(&value()?, now)?),
            "--until" => filter.until = Some(parse_time(&value()?, now)?),
            "--aggregate" => {
                let text = value()?;
                let id = text
                    .parse()
                    .map_err(|_| format!("--aggregate needs a UUID, not `{text}`"))?;
                filter.aggregate = Some(id);
            }
            "--status" => filter.status = Some(Status::parse(&value()?)?),
            "--limit" => {
                let limit: i64 = value()?
                    .parse()
                    .map_err(|_| "--limit needs a number".to_owned())?;
                if limit < 1 {
                    return Err("--limit must be at least 1".into());
                }
                filter.limit = Some(limit);
            }
            "--dry-run" if changes => options.dry_run = true,
            "--yes" if changes => options.yes = true,
            "--all" if changes => options.all = true,
            "--actor" if changes => options.actor = Some(value()?),
            "--rate" if command == Command::Replay => options.rate = Some(parse_rate(&value()?)?),
            id if id.parse::<i64>().is_ok() && command != Command::Stats => {
                filter.ids.push(id.parse().expect("checked"))
            }
            other => return Err(format!("unknown option `{other}` for this command")),
        }
    }
    if command == Command::Show && options.filter.ids.len() != 1 {
        return Err("show needs one numeric ID (see dlq list)".into());
    }
    if matches!(command, Command::Replay | Command::Discard) {
        let verb = if command == Command::Replay {
            "replay"
        } else {
            "discard"
        };
        match options.filter.status {
            None | Some(Status::Pending) => options.filter.status = Some(Status::Pending),
            Some(_) => return Err(format!("only pending dead letters can be {verb}ed")),
        }
        if options.filter.selects_everything() && !options.all {
            return Err(format!(
                "{verb} needs IDs or a filter; use --all for every pending dead letter"
            ));
        }
    }
    if command == Command::Discard && options.discard_reason.is_none() {
        return Err("discard needs --reason TEXT (kept for audit)".into());
    }
    Ok(options)
}

/// `25`, `25/s` or `0.5/s`.
fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "--rate needs messages per second, like 25/s, not `{text}`"
        )),
    }
}

/// Who runs the command: `--actor`, else the operating-system user.
pub fn actor(options: &Options) -> String {
    options
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn parse_now(command: Command, text: &str) -> Result<Options, String> {
        parse(command, &args(text), Utc::now())
    }

    #[test]
    fn filters_parse_and_bad_ones_are_refused() {
        let options = parse_now(Command::List, "--queue q.dlq --status pending --limit 5").unwrap();
        assert_eq!(options.filter.queue.as_deref(), Some("q.dlq"));
        assert_eq!(options.filter.limit, Some(5));
        assert_eq!(options.filter.status, Some(Status::Pending));
        for bad in [
            "--status gone",
            "--limit",
            "--limit 0",
            "--aggregate x",
            "--since soon",
            "--dry-run",
        ] {
            assert!(parse_now(Command::List, bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn replay_needs_a_selection_and_only_takes_pending_letters() {
        assert!(parse_now(Command::Replay, "").is_err());
        assert!(parse_now(Command::Replay, "--status replayed --type t").is_err());
        let all = parse_now(Command::Replay, "--all --rate 25/s --yes").unwrap();
        assert_eq!(
            (all.rate, all.yes, all.filter.status),
            (Some(25.0), true, Some(Status::Pending))
        );
        let ids = parse_now(Command::Replay, "3 4 --dry-run").unwrap();
        assert_eq!((ids.filter.ids, ids.dry_run), (vec![3, 4], true));
        assert!(parse_now(Command::Replay, "3 --rate 0").is_err());
    }

    #[test]
    fn discard_needs_a_reason_and_reason_filters_elsewhere() {
        assert!(parse_now(Command::Discard, "7").is_err());
        let discard = parse_now(
            Command::Discard,
            "7 --reason obsolete --failure-reason boom",
        )
        .unwrap();
        assert_eq!(discard.discard_reason.as_deref(), Some("obsolete"));
        assert_eq!(discard.filter.reason.as_deref(), Some("boom"));
        let list = parse_now(Command::List, "--reason boom").unwrap();
        assert_eq!(list.filter.reason.as_deref(), Some("boom"));
    }
}
