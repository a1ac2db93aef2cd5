//! The local client API: one task per client connection, each request
//! handed to the router task and answered when the core is done with it.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::debug;

use super::membership::Membership;
use super::{next_connection, Input};
use crate::client::{read_frame, write_frame, ClientError, ClientRequest, ClientResponse};
use crate::config::NodeConfig;
use crate::routing::{ClientOutcome, Failure};

const SHUTTING_DOWN: &str = "node is shutting down";

/// The client API's settings, from `node.toml`.
#[derive(Clone)]
pub(super) struct ClientApi {
    testnet: bool,
    membership: Arc<Membership>,
    max_connections: usize,
    request_timeout: Duration,
    idle_timeout: Duration,
}

impl ClientApi {
    pub(super) fn new(config: &NodeConfig, membership: Arc<Membership>) -> ClientApi {
        ClientApi {
            testnet: config.testnet,
            membership,
            max_connections: config.runtime.client_max_connections,
            request_timeout: Duration::from_secs(config.runtime.client_request_timeout_secs),
            idle_timeout: Duration::from_secs(config.runtime.client_idle_timeout_secs),
        }
    }
}

pub(super) async fn serve_clients(
    listener: TcpListener,
    input: mpsc::Sender<Input>,
    api: ClientApi,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(api.max_connections));
    while let Some((stream, _)) = next_connection(&listener, &mut shutdown).await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (input, api) = (input.clone(), api.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_client(stream, input, api).await {
                debug!(error = %e, "client connection ended with an error");
            }
        });
    }
}

async fn serve_client(
    mut stream: TcpStream,
    input: mpsc::Sender<Input>,
    api: ClientApi,
) -> Result<(), ClientError> {
    loop {
        let request: ClientRequest =
            match tokio::time::timeout(api.idle_timeout, read_frame(&mut stream)).await {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) | Err(_) => return Ok(()),
                Ok(Err(e)) => {
                    let _ = write_frame(
                        &mut stream,
                        &ClientResponse::Failed {
                            reason: format!("bad request: {e}"),
                        },
                    )
                    .await;
                    return Err(e);
                }
            };
        let response = answer(request, &input, &api).await;
        write_frame(&mut stream, &response).await?;
    }
}

fn failed(reason: &str) -> ClientResponse {
    ClientResponse::Failed {
        reason: reason.to_string(),
    }
}

/// Hand a request to the router task and wait for its reply.
async fn ask<T>(
    input: &mpsc::Sender<Input>,
    request: impl FnOnce(oneshot::Sender<T>) -> Input,
    timeout: Option<Duration>,
) -> Result<T, ClientResponse> {
    let (reply, rx) = oneshot::channel();
    if input.send(request(reply)).await.is_err() {
        return Err(failed(SHUTTING_DOWN));
    }
    let answered = match timeout {
        Some(t) => tokio::time::timeout(t, rx)
            .await
            .map_err(|_| ClientResponse::from(Failure::Timeout))?,
        None => rx.await,
    };
    answered.map_err(|_| failed(SHUTTING_DOWN))
}

async fn answer(
    request: ClientRequest,
    input: &mpsc::Sender<Input>,
    api: &ClientApi,
) -> ClientResponse {
    let routed = Some(api.request_timeout);
    let outcome = match request {
        ClientRequest::Get { key } => {
            ask(input, |reply| Input::ClientGet { key, reply }, routed).await
        }
        ClientRequest::Insert { block } => {
            ask(input, |reply| Input::ClientPut { block, reply }, routed).await
        }
        ClientRequest::Place { block } => {
            if !api.testnet {
                return failed("place is refused: the node is not in testnet mode");
            }
            return match ask(input, |reply| Input::Place { block, reply }, None).await {
                Ok(Ok(())) => ClientResponse::Placed,
                Ok(Err(e)) => failed(&e.to_string()),
                Err(response) => response,
            };
        }
        ClientRequest::Swapping { on } => {
            if !api.testnet {
                return failed("swapping is refused: the node is not in testnet mode");
            }
            return match ask(input, |reply| Input::SetSwapping { on, reply }, None).await {
                Ok(s) => ClientResponse::Status(Box::new(s)),
                Err(response) => response,
            };
        }
        ClientRequest::AddPeer { peer } => {
            return match api.membership.add(peer).await {
                Ok(()) => ClientResponse::PeersChanged,
                Err(e) => failed(&e.to_string()),
            };
        }
        ClientRequest::RemovePeer { public_key } => {
            return match api.membership.remove(public_key).await {
                Ok(()) => ClientResponse::PeersChanged,
                Err(e) => failed(&e.to_string()),
            };
        }
        ClientRequest::Status => {
            return match ask(input, |reply| Input::Status { reply }, None).await {
                Ok(s) => ClientResponse::Status(Box::new(s)),
                Err(response) => response,
            };
        }
    };
    match outcome {
        Ok(ClientOutcome::Found(block)) => ClientResponse::Found { block },
        Ok(ClientOutcome::Inserted) => ClientResponse::Inserted,
        Ok(other) => other.into(),
        Err(response) => response,
    }
}
