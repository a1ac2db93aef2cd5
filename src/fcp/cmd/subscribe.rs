//! `SubscribeUSK` → `SubscribedUSK`, then `SubscribedUSKUpdate` for each
//! newer edition found and `SubscribedUSKRoundFinished` after each search;
//! until `UnsubscribeUSK` (or `RemoveRequest`) or the connection ends.
//!
//! Each round is the search `veil get USK@…/-1` makes ([`site::target`]),
//! probing forward from the newest edition seen so far, every
//! [`POLL_EVERY`] (`DontPoll=true`: one round only).

use std::time::Duration;

use super::{codes, field, flag, Job, Refusal};
use crate::client::site::{self, Key};
use crate::fcp::frame::Message;
use crate::keys::{Edition, UskUri};

/// The wait between two searches for a newer edition.
pub const POLL_EVERY: Duration = Duration::from_secs(10);

/// Serve one subscription.
pub async fn run(job: Job, msg: Message) {
    if let Err(r) = subscribe(&job, &msg).await {
        super::refuse(&job.out, "ProtocolError", &job.id, false, r).await;
    }
}

async fn subscribe(job: &Job, msg: &Message) -> Result<(), Refusal> {
    let text = super::keys::strip(field(msg, "URI")?);
    let usk: UskUri = text
        .parse()
        .map_err(|e| Refusal::protocol(codes::URI_PARSE_ERROR, format!("{text}: {e}")))?;
    let once = flag(msg, "DontPoll", false)?;
    let mut known = match usk.edition {
        Edition::Number(n) => Some(n),
        Edition::Latest => None,
    };
    job.out
        .send(
            Message::new("SubscribedUSK")
                .with("Identifier", &job.id)
                .with("URI", &usk)
                .with("DontPoll", once),
        )
        .await;
    let latest = Key::Usk(usk.at(Edition::Latest));
    let mut told: Option<u64> = None;
    loop {
        if let Ok((_, Some(n))) = site::target(&job.server.config.node, &latest, known).await {
            if told.is_none_or(|t| n > t) {
                let update = Message::new("SubscribedUSKUpdate")
                    .with("Identifier", &job.id)
                    .with("Edition", n)
                    .with("URI", usk.at(Edition::Number(n)))
                    .with("NewKnownGood", true)
                    .with("NewSLKnownGood", true);
                job.out.send(update).await;
                told = Some(n);
                known = Some(n);
            }
        }
        job.out
            .send(Message::new("SubscribedUSKRoundFinished").with("Identifier", &job.id))
            .await;
        if once {
            return Ok(());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
