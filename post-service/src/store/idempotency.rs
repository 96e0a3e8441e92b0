//! Idempotency keys of `POST /v1/posts`, stored with the response in the
//! transaction that created the post.
use proto::UserId;
use serde_json::Value;
use sqlx::{Postgres, Transaction};

/// What a key means for this request.
#[derive(Debug)]
pub enum Claim {
    /// First use: go ahead, then [`save_response`] in the same transaction.
    New,
    /// Used before with the same request: answer this again.
    Replay { status: u16, body: Value },
    /// Used before with another request.
    Mismatch,
}

/// Claims `key` for `user`. A concurrent request with the same key waits
/// here until the first one commits (or rolls back) and then replays it.
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    key: &str,
    request: &Value,
) -> Result<Claim, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(&user.0)
    .bind(key)
    .bind(request)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let (stored, status, body): (Value, Option<i16>, Option<Value>) = sqlx::query_as(
        "SELECT request, response_status, response_body FROM idempotency_keys WHERE user_id = $1 AND key = $2",
    )
    .bind(&user.0)
    .bind(key)
    .fetch_one(&mut **tx)
    .await?;
    if stored != *request {
        return Ok(Claim::Mismatch);
    }
    match (status, body) {
        (Some(status), Some(body)) => Ok(Claim::Replay {
            status: status as u16,
            body,
        }),
        // Rows become visible only with their response; treat anything else
        // as a different request rather than guess.
        _ => Ok(Claim::Mismatch),
    }
}

pub async fn save_response(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    key: &str,
    status: u16,
    body: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4 WHERE user_id = $1 AND key = $2",
    )
    .bind(&user.0)
    .bind(key)
    .bind(status as i16)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
