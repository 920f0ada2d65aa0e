//! The reading verbs: get, list, and watch (with resourceVersion, selectors, bookmarks and
//! 410 Gone for a compacted history).

// A failed request is answered with its response, which is what the error carries.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::request::ResourceRequest;
use crate::respond::{Body, json_response, line, log, not_found};
use crate::store::Filter;

/// How often an idle watch that asked for bookmarks gets one.
pub(crate) const BOOKMARK_PERIOD: Duration = Duration::from_millis(500);

impl ResourceRequest {
    pub(crate) fn get(&self, name: &str) -> Response<Body> {
        self.log("GET", "");
        let inner = self
            .state
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match inner.objects.get(&self.key, self.namespace(), name) {
            Some(object) => json_response(StatusCode::OK, &self.shown(object.clone())),
            None => not_found(&self.resource, name),
        }
    }

    pub(crate) fn list(&self) -> Response<Body> {
        self.log(
            "LIST",
            self.query.get("labelSelector").map_or("", String::as_str),
        );
        let filter = match self.filter() {
            Ok(f) => f,
            Err(response) => return response,
        };
        let inner = self
            .state
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let items: Vec<Value> = inner
            .objects
            .list(&self.key, self.namespace.as_deref())
            .into_iter()
            .filter(|o| filter.matches(o))
            .map(|o| {
                let mut item = self.shown(o.clone());
                // The real server leaves the type out of built-in kinds' list items.
                if self.resource.schema.is_none()
                    && let Some(map) = item.as_object_mut()
                {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
                item
            })
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", self.resource.kind),
                "apiVersion": self.resource.api_version(),
                "metadata": {"resourceVersion": inner.objects.revision.to_string()},
                "items": items,
            }),
        )
    }

    pub(crate) fn watch(self) -> Response<Body> {
        let from = self
            .query
            .get("resourceVersion")
            .cloned()
            .unwrap_or_default();
        self.log("WATCH", &format!("rv={from}"));
        let filter = match self.filter() {
            Ok(f) => f,
            Err(response) => return response,
        };
        let bookmarks = self.flag("allowWatchBookmarks");
        let initial_events = self.flag("sendInitialEvents");
        let timeout = self
            .query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(Duration::from_secs(1800), Duration::from_secs);
        let (sender, receiver) = mpsc::channel::<Bytes>(256);
        let mut backlog = Vec::new();
        let mut changes;
        let mut seen;
        {
            let inner = self
                .state
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            changes = inner.objects.changes.subscribe();
            seen = inner.objects.revision;
            if from.is_empty() || from == "0" || initial_events {
                for object in inner.objects.list(&self.key, self.namespace.as_deref()) {
                    if filter.matches(object) {
                        backlog.push(self.event("ADDED", object.clone()));
                    }
                }
                if initial_events {
                    backlog.push(self.bookmark(seen, true));
                }
            } else {
                let replay = from
                    .parse::<u64>()
                    .ok()
                    .and_then(|rv| inner.objects.since(rv));
                match replay {
                    Some(replay) => {
                        for change in replay {
                            if change.kind == self.key
                                && let Some(event) = self.filtered(&filter, &change)
                            {
                                backlog.push(event);
                            }
                        }
                    }
                    None => {
                        let oldest = inner.objects.oldest;
                        backlog.push(json!({
                            "type": "ERROR",
                            "object": {
                                "kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure",
                                "message": format!("too old resource version: {from} ({oldest})"),
                                "reason": "Expired",
                                "code": 410,
                            },
                        }));
                        drop(inner);
                        log(
                            &self.state,
                            format!("GONE {} rv={from}", self.resource.plural),
                        );
                        return self.stream(receiver, sender, backlog, None);
                    }
                }
            }
        }
        let mut epoch = self.state.watch_epoch.subscribe();
        epoch.mark_unchanged();
        let out = sender.clone();
        let call = Arc::new(self);
        let task_call = call.clone();
        let live = async move {
            let call = task_call;
            let deadline = tokio::time::Instant::now() + timeout;
            let mut ticker = tokio::time::interval(BOOKMARK_PERIOD);
            ticker.tick().await;
            loop {
                let event = tokio::select! {
                    change = changes.recv() => match change {
                        Ok(change) => {
                            seen = change.revision;
                            if change.kind != call.key {
                                continue;
                            }
                            match call.filtered(&filter, &change) {
                                Some(event) => event,
                                None => continue,
                            }
                        }
                        // Lagged or closed: end, and let the client resume.
                        Err(_) => return,
                    },
                    _ = ticker.tick(), if bookmarks => {
                        log(&call.state, format!("BOOKMARK {} rv={seen} by {}", call.resource.plural, call.requester));
                        call.bookmark(seen, false)
                    }
                    _ = epoch.changed() => return,
                    _ = tokio::time::sleep_until(deadline) => return,
                };
                if out.send(line(&event)).await.is_err() {
                    return;
                }
            }
        };
        call.stream(receiver, sender, backlog, Some(Box::pin(live)))
    }

    pub(crate) fn stream(
        &self,
        receiver: mpsc::Receiver<Bytes>,
        sender: mpsc::Sender<Bytes>,
        backlog: Vec<Value>,
        live: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    ) -> Response<Body> {
        tokio::spawn(async move {
            for event in backlog {
                if sender.send(line(&event)).await.is_err() {
                    return;
                }
            }
            drop(sender);
            if let Some(live) = live {
                live.await;
            }
        });
        let body = StreamBody::new(
            ReceiverStream::new(receiver).map(|bytes| Ok::<_, Infallible>(Frame::data(bytes))),
        );
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("transfer-encoding", "chunked")
            .body(BodyExt::boxed(body))
            .expect("a status and fixed headers make a valid response")
    }

    pub(crate) fn event(&self, kind: &str, object: Value) -> Value {
        json!({"type": kind, "object": self.shown(object)})
    }

    pub(crate) fn bookmark(&self, revision: u64, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({
            "type": "BOOKMARK",
            "object": {
                "apiVersion": self.resource.api_version(),
                "kind": self.resource.kind,
                "metadata": metadata,
            },
        })
    }

    /// A change as a watch with `filter` sees it: an object moving into the selection is
    /// ADDED, one moving out is DELETED.
    pub(crate) fn filtered(&self, filter: &Filter, change: &crate::store::Change) -> Option<Value> {
        let now = filter.matches(&change.object);
        let before = change.before.as_ref().is_some_and(|b| filter.matches(b));
        let kind = match change.change {
            "MODIFIED" => match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            other if now => other,
            _ => return None,
        };
        Some(self.event(kind, change.object.clone()))
    }
}
