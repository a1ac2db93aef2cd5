//! Work that takes longer than a page load: fetching a large file,
//! inserting an upload. Each job has a progress page that refreshes
//! itself (a `<meta refresh>`, no script) until the job is done.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::pages::{error_page, escape, page, Problem};
use super::State;

/// The most jobs remembered; the oldest finished ones are forgotten first.
pub const MAX_JOBS: usize = 32;

/// Where a job is.
#[derive(Clone, Debug)]
pub enum Stage {
    Running {
        done: u64,
        total: u64,
    },
    /// A fetched file, ready at `/result/<id>`.
    Fetched {
        mime: String,
        bytes: Arc<Vec<u8>>,
    },
    /// An insert's URI.
    Inserted {
        uri: String,
    },
    Failed {
        problem: Problem,
        detail: String,
    },
}

#[derive(Debug)]
pub struct Job {
    /// What the job is about (a URI, a file name).
    pub what: String,
    /// "blocks" or "files".
    pub unit: &'static str,
    pub stage: Stage,
}

/// The last id given, and every job remembered, by id.
type Table = (u64, BTreeMap<u64, Arc<Mutex<Job>>>);

/// Every job, by id.
#[derive(Default)]
pub struct Jobs {
    inner: Mutex<Table>,
}

/// A job's handle, for the task doing it.
#[derive(Clone)]
pub struct Handle(Arc<Mutex<Job>>);

impl Handle {
    pub fn set(&self, stage: Stage) {
        if let Ok(mut j) = self.0.lock() {
            j.stage = stage;
        }
    }

    pub fn progress(&self, done: u64, total: u64) {
        self.set(Stage::Running { done, total });
    }
}

impl Jobs {
    /// A new job, or `None` when [`MAX_JOBS`] are still running.
    pub fn start(&self, what: String, unit: &'static str) -> Option<(u64, Handle)> {
        let mut inner = self.inner.lock().ok()?;
        let (next, jobs) = &mut *inner;
        while jobs.len() >= MAX_JOBS {
            let finished = jobs.iter().find_map(|(id, j)| {
                let running = j
                    .lock()
                    .is_ok_and(|j| matches!(j.stage, Stage::Running { .. }));
                (!running).then_some(*id)
            })?;
            jobs.remove(&finished);
        }
        *next += 1;
        let job = Arc::new(Mutex::new(Job {
            what,
            unit,
            stage: Stage::Running { done: 0, total: 0 },
        }));
        jobs.insert(*next, job.clone());
        Some((*next, Handle(job)))
    }

    fn get(&self, id: u64) -> Option<(String, &'static str, Stage)> {
        let inner = self.inner.lock().ok()?;
        let job = inner.1.get(&id)?.lock().ok()?;
        Some((job.what.clone(), job.unit, job.stage.clone()))
    }
}

fn no_job() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        Problem::NotFound,
        "No such job: it may have finished long ago and been forgotten.",
    )
}

pub async fn progress(AxumState(state): AxumState<State>, Path(id): Path<u64>) -> Response {
    let Some((what, unit, stage)) = state.jobs.get(id) else {
        return no_job();
    };
    let what = escape(&what);
    let (refresh, body) = match stage {
        Stage::Running { done, total } => (
            "<meta http-equiv=\"refresh\" content=\"1\">".to_string(),
            format!(
                "<p>Working on <code>{what}</code>: <span id=\"done\">{done}</span> of \
                 <span id=\"total\">{total}</span> {unit}.</p>\
                 <progress value=\"{done}\" max=\"{}\"></progress>\
                 <p>This page refreshes itself every second.</p>",
                total.max(1)
            ),
        ),
        Stage::Fetched { bytes, .. } => (
            format!("<meta http-equiv=\"refresh\" content=\"0;url=/result/{id}\">"),
            format!(
                "<p>Fetched <code>{what}</code> ({} bytes): \
                 <a id=\"result\" href=\"/result/{id}\">open it</a>.</p>",
                bytes.len()
            ),
        ),
        Stage::Inserted { uri } => (
            String::new(),
            format!(
                "<p>Inserted <code>{what}</code>. Its URI:</p>\
                 <p><code id=\"uri\">{}</code></p><p><a id=\"open\" href=\"/{}\">Open it</a></p>",
                escape(&uri),
                escape(&uri)
            ),
        ),
        Stage::Failed { problem, detail } => {
            return error_page(StatusCode::OK, problem, &format!("{what}: {detail}"))
        }
    };
    let html = page("Progress", &body).replacen("<head>", &format!("<head>{refresh}"), 1);
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

pub async fn result(AxumState(state): AxumState<State>, Path(id): Path<u64>) -> Response {
    match state.jobs.get(id) {
        Some((_, _, Stage::Fetched { mime, bytes })) => {
            super::browse::serve_bytes(&mime, bytes.as_slice())
        }
        Some(_) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/progress/{id}"))],
        )
            .into_response(),
        None => no_job(),
    }
}
