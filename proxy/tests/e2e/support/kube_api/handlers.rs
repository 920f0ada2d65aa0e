//! The fake API server's HTTP side: routing a request to discovery or to a resource, and the
//! verbs on resources.

// A failed request is answered with its response, which is what the error carries.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::fields::{self, ApplyRequest};
use super::store::{Filter, Selector, TypeKey};
use super::types::ResourceType;
use super::validate;
use super::{State, TOKEN_PREFIX};

type Body = BoxBody<Bytes, Infallible>;

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_PERIOD: Duration = Duration::from_millis(500);

pub async fn accept(
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
) {
    // Dropped when this task is aborted, which aborts every connection with it.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { serve(&state, request).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap()
}

/// A `Status` failure, as the API server words them.
fn failure(code: StatusCode, reason: &str, message: String, details: Value) -> Response<Body> {
    json_response(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code.as_u16(),
        }),
    )
}

fn not_found(resource: &ResourceType, name: &str) -> Response<Body> {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
        json!({"name": name, "group": resource.group, "kind": resource.plural}),
    )
}

fn invalid(resource: &ResourceType, name: &str, message: &str) -> Response<Body> {
    failure(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{} \"{name}\" is invalid: {message}", resource.kind),
        json!({"name": name, "group": resource.group, "kind": resource.kind}),
    )
}

fn log(state: &State, line: String) {
    state.requests.lock().unwrap().push(line);
}

/// The user a request's bearer token names.
fn user(request: &Request<Incoming>) -> Option<String> {
    let header = request.headers().get("authorization")?.to_str().ok()?;
    let token = header.strip_prefix("Bearer ")?;
    Some(token.strip_prefix(TOKEN_PREFIX)?.to_owned())
}

/// Serves one request, or, for a user cut off from the server, drops the connection as a
/// network partition would.
async fn serve(
    state: &Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    if let Some(user) = user(&request)
        && state.cut_off.lock().unwrap().contains(&user)
    {
        return Err(std::io::Error::other(format!("{user} is cut off")));
    }
    Ok(handle(state, request).await)
}

async fn handle(state: &Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let requester = user(&request).unwrap_or_default();
    let authorized = !requester.is_empty();
    // As the public-info-viewer role allows anyone.
    let public = matches!(
        request.uri().path(),
        "/version" | "/healthz" | "/livez" | "/readyz"
    );
    if !authorized && !public {
        return failure(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
            json!({}),
        );
    }
    let (parts, body) = request.into_parts();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let segments: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .split('/')
        .next()
        .unwrap_or("unknown")
        .to_owned();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();

    let inner = state.inner.lock().unwrap();
    let discovery = match segments.as_slice() {
        ["version"] => Some(json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-gantry-fake",
            "platform": "linux/amd64",
        })),
        ["healthz" | "readyz" | "livez"] => {
            return Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
        }
        ["api"] => Some(inner.types.core_versions()),
        ["openapi", "v3"] => Some(inner.types.openapi_root()),
        ["openapi", "v3", path @ ..] => inner.types.openapi_document(&path.join("/")),
        ["apis"] => Some(inner.types.group_list()),
        ["api", version] => inner.types.resource_list("", version),
        ["apis", group, version] => inner.types.resource_list(group, version),
        _ => None,
    };
    if let Some(document) = discovery {
        return json_response(StatusCode::OK, &document);
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => {
            return failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource".into(),
                json!({}),
            );
        }
    };
    let namespaced_path = match rest {
        ["namespaces", namespace, plural, tail @ ..] => inner
            .types
            .find(group, version, plural)
            .filter(|t| t.namespaced)
            .map(|t| (t.clone(), Some((*namespace).to_owned()), tail)),
        _ => None,
    };
    let (resource, namespace, tail) = match namespaced_path {
        Some(found) => found,
        None => match rest {
            [plural, tail @ ..] => match inner.types.find(group, version, plural) {
                Some(t) => (t.clone(), None, tail),
                None => {
                    return failure(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        "the server could not find the requested resource".into(),
                        json!({}),
                    );
                }
            },
            [] => {
                return failure(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "not found".into(),
                    json!({}),
                );
            }
        },
    };
    drop(inner);
    let call = Call {
        state: state.clone(),
        key: (resource.group.clone(), resource.plural.clone()),
        resource,
        namespace,
        name: tail.first().map(|s| (*s).to_owned()),
        subresource: tail.get(1).map(|s| (*s).to_owned()),
        query,
        body,
        content_type,
        user_agent,
        requester,
    };
    match (parts.method, &call.name) {
        (Method::GET, None) if call.flag("watch") => call.watch(),
        (Method::GET, None) => call.list(),
        (Method::GET, Some(name)) => call.get(name),
        (Method::POST, None) => call.create(),
        (Method::PUT, Some(name)) => call.update(name),
        (Method::PATCH, Some(name)) => call.patch(name),
        (Method::DELETE, Some(name)) => call.delete(name),
        (method, _) => failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported here by the fake API server"),
            json!({}),
        ),
    }
}

/// One request on a resource.
struct Call {
    state: Arc<State>,
    resource: ResourceType,
    key: TypeKey,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    query: HashMap<String, String>,
    body: Bytes,
    content_type: String,
    user_agent: String,
    /// Who asked (from the token).
    requester: String,
}

impl Call {
    fn flag(&self, name: &str) -> bool {
        matches!(self.query.get(name).map(String::as_str), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }

    fn manager(&self) -> String {
        self.query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| self.user_agent.clone())
    }

    fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    fn log(&self, verb: &str, details: &str) {
        let mut line = format!("{verb} {}", self.resource.plural);
        if let Some(sub) = &self.subresource {
            line.push('/');
            line.push_str(sub);
        }
        match (&self.name, &self.namespace) {
            (Some(name), Some(ns)) => line.push_str(&format!(" {ns}/{name}")),
            (Some(name), None) => line.push_str(&format!(" {name}")),
            (None, Some(ns)) => line.push_str(&format!(" in {ns}")),
            (None, None) => {}
        }
        if !details.is_empty() {
            line.push(' ');
            line.push_str(details);
        }
        line.push_str(" by ");
        line.push_str(&self.requester);
        log(&self.state, line);
        // Server-side apply is a patch to RBAC.
        let rbac_verb = match verb {
            "APPLY" => "patch".to_owned(),
            other => other.to_lowercase(),
        };
        self.record(&rbac_verb);
    }

    /// Records the call as RBAC sees it: verb, group, resource, namespace, user.
    fn record(&self, verb: &str) {
        let resource = match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource.plural),
            None => self.resource.plural.clone(),
        };
        self.state.calls.lock().unwrap().push(super::Call {
            verb: verb.to_owned(),
            group: self.resource.group.clone(),
            resource,
            namespace: self.namespace.clone(),
            user: self.requester.clone(),
        });
    }

    fn filter(&self) -> Result<Filter, Response<Body>> {
        let parse = |key: &str| {
            Selector::parse(self.query.get(key).map_or("", String::as_str))
                .map_err(|e| failure(StatusCode::BAD_REQUEST, "BadRequest", e, json!({})))
        };
        Ok(Filter {
            namespace: self.namespace.clone(),
            labels: parse("labelSelector")?,
            fields: parse("fieldSelector")?,
        })
    }

    /// The object as this request's version shows it.
    fn shown(&self, mut object: Value) -> Value {
        object["apiVersion"] = json!(self.resource.api_version());
        object["kind"] = json!(self.resource.kind);
        object
    }

    fn get(&self, name: &str) -> Response<Body> {
        self.log("GET", "");
        let inner = self.state.inner.lock().unwrap();
        match inner.objects.get(&self.key, self.namespace(), name) {
            Some(object) => json_response(StatusCode::OK, &self.shown(object.clone())),
            None => not_found(&self.resource, name),
        }
    }

    fn list(&self) -> Response<Body> {
        self.log(
            "LIST",
            self.query.get("labelSelector").map_or("", String::as_str),
        );
        let filter = match self.filter() {
            Ok(f) => f,
            Err(response) => return response,
        };
        let inner = self.state.inner.lock().unwrap();
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

    fn watch(self) -> Response<Body> {
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
            let inner = self.state.inner.lock().unwrap();
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

    fn stream(
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
            .unwrap()
    }

    fn event(&self, kind: &str, object: Value) -> Value {
        json!({"type": kind, "object": self.shown(object)})
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Value {
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
    fn filtered(&self, filter: &Filter, change: &super::store::Change) -> Option<Value> {
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

    fn parse_body(&self) -> Result<Value, Response<Body>> {
        if self.content_type.contains("protobuf") {
            return Err(failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "the fake API server speaks JSON and YAML only, not protobuf".into(),
                json!({}),
            ));
        }
        let parsed = if self.content_type.contains("yaml") {
            yaml_serde::from_slice::<Value>(&self.body).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice::<Value>(&self.body).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| {
            failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body of the request was in an unknown format: {e}"),
                json!({}),
            )
        })
    }

    /// Checks the object and drops (or, with `fieldValidation=Strict`, refuses) unknown
    /// fields. Returns the warnings to send.
    fn check(&self, name: &str, object: &mut Value) -> Result<Vec<String>, Response<Body>> {
        let unknown = validate::check(&self.resource, object)
            .map_err(|reason| invalid(&self.resource, name, &reason))?;
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        if self.query.get("fieldValidation").map(String::as_str) == Some("Strict") {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("strict decoding error: {}", list.join(", ")),
                json!({}),
            ));
        }
        validate::prune(object, &unknown);
        Ok(unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect())
    }

    /// What every write does before storing: the type fields, the namespace, Secrets'
    /// `stringData`.
    fn normalise(&self, object: &mut Value) {
        object["apiVersion"] = json!(self.resource.api_version());
        object["kind"] = json!(self.resource.kind);
        if let Some(ns) = &self.namespace {
            object["metadata"]["namespace"] = json!(ns);
        }
        if self.resource.kind == "Secret"
            && self.resource.group.is_empty()
            && let Some(Value::Object(strings)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            use base64::Engine;
            for (key, value) in strings {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(value.as_str().unwrap_or_default());
                object["data"][key] = json!(encoded);
            }
        }
    }

    fn create(&self) -> Response<Body> {
        let mut object = match self.parse_body() {
            Ok(o) => o,
            Err(r) => return r,
        };
        if let Some(ns) = object["metadata"]["namespace"].as_str()
            && self.namespace.as_deref().is_some_and(|want| want != ns)
        {
            return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                    json!({}),
                );
        }
        let name = match object["metadata"]["name"].as_str() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match object["metadata"]["generateName"].as_str() {
                Some(prefix) => {
                    let suffix = self.state.inner.lock().unwrap().objects.uid();
                    format!("{prefix}{}", &suffix[suffix.len() - 5..])
                }
                None => {
                    return invalid(
                        &self.resource,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    );
                }
            },
        };
        object["metadata"]["name"] = json!(name);
        self.log("CREATE", &name);
        self.store_new(&name, object, None)
    }

    /// Creates an object that does not exist yet: as given, or as `apply` makes it.
    fn store_new(
        &self,
        name: &str,
        mut object: Value,
        apply: Option<(&Value, &ApplyRequest<'_>)>,
    ) -> Response<Body> {
        if let Some((applied, request)) = apply {
            object = match fields::apply(&object, applied, request) {
                Ok(o) => o,
                Err(e) => return failure(StatusCode::CONFLICT, "Conflict", e, json!({})),
            };
        }
        self.normalise(&mut object);
        if self.resource.status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let warnings = match self.check(name, &mut object) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let now = now();
        let mut inner = self.state.inner.lock().unwrap();
        if let Some(ns) = &self.namespace {
            let key = (String::new(), "namespaces".to_owned());
            if inner.objects.get(&key, "", ns).is_none() {
                return failure(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("namespaces \"{ns}\" not found"),
                    json!({"name": ns, "kind": "namespaces"}),
                );
            }
        }
        if inner
            .objects
            .get(&self.key, self.namespace(), name)
            .is_some()
        {
            return failure(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", self.resource.qualified()),
                json!({"name": name, "group": self.resource.group, "kind": self.resource.plural}),
            );
        }
        let uid = inner.objects.uid();
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(uid);
        metadata["creationTimestamp"] = json!(now);
        metadata["generation"] = json!(1);
        if let Some(map) = metadata.as_object_mut() {
            map.remove("resourceVersion");
            map.remove("generateName");
        }
        if apply.is_none() {
            fields::record_update(
                None,
                &mut object,
                &self.manager(),
                None,
                &self.resource.api_version(),
                &now,
            );
        }
        if self.resource.kind == "CustomResourceDefinition" {
            object["status"] = json!({
                "acceptedNames": object["spec"]["names"],
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "storedVersions": [object["spec"]["versions"][0]["name"]],
            });
        }
        if !self.dry_run() {
            if self.resource.kind == "CustomResourceDefinition" {
                inner.types.set_crd(&object);
            }
            object = inner.objects.put(&self.key, self.namespace(), name, object);
        }
        with_warnings(
            json_response(StatusCode::CREATED, &self.shown(object)),
            &warnings,
        )
    }

    fn update(&self, name: &str) -> Response<Body> {
        let object = match self.parse_body() {
            Ok(o) => o,
            Err(r) => return r,
        };
        self.log("UPDATE", "");
        let wanted_version = object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        self.change(name, wanted_version, |_existing| Ok(object))
    }

    fn patch(&self, name: &str) -> Response<Body> {
        let patch = match self.parse_body() {
            Ok(o) => o,
            Err(r) => return r,
        };
        if self.content_type.starts_with("application/apply-patch") {
            return self.apply(name, patch);
        }
        self.log("PATCH", &self.content_type);
        let json_patch = self.content_type.starts_with("application/json-patch");
        self.change(name, None, |existing| {
            let mut object = existing.clone();
            if json_patch {
                apply_json_patch(&mut object, &patch)
                    .map_err(|e| invalid(&self.resource, name, &e))?;
            } else {
                fields::merge_patch(&mut object, &patch);
            }
            Ok(object)
        })
    }

    fn apply(&self, name: &str, applied: Value) -> Response<Body> {
        let manager = match self.query.get("fieldManager") {
            Some(m) => m.clone(),
            None => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "PATCH, application/apply-patch+yaml requests must have a fieldManager".into(),
                    json!({}),
                );
            }
        };
        self.log("APPLY", &manager);
        let force = self.flag("force");
        let api_version = self.resource.api_version();
        let exists = {
            let inner = self.state.inner.lock().unwrap();
            inner
                .objects
                .get(&self.key, self.namespace(), name)
                .is_some()
        };
        if !exists {
            if self.subresource.is_some() {
                return not_found(&self.resource, name);
            }
            let mut base = json!({"metadata": {"name": name}});
            if let Some(ns) = &self.namespace {
                base["metadata"]["namespace"] = json!(ns);
            }
            // Applying what does not exist creates it, which RBAC checks as such.
            self.record("create");
            let now = now();
            let request = ApplyRequest {
                manager: &manager,
                force,
                subresource: None,
                api_version: &api_version,
                now: &now,
            };
            return self.store_new(name, base, Some((&applied, &request)));
        }
        let now = now();
        let request = ApplyRequest {
            manager: &manager,
            force,
            subresource: self.subresource.as_deref(),
            api_version: &api_version,
            now: &now,
        };
        self.change_managed(name, None, false, |existing| {
            fields::apply(existing, &applied, &request)
                .map_err(|e| failure(StatusCode::CONFLICT, "Conflict", e, json!({})))
        })
    }

    /// Replace or patch: `make` turns the stored object into the new one.
    fn change(
        &self,
        name: &str,
        wanted_version: Option<String>,
        make: impl FnOnce(&Value) -> Result<Value, Response<Body>>,
    ) -> Response<Body> {
        self.change_managed(name, wanted_version, true, make)
    }

    fn change_managed(
        &self,
        name: &str,
        wanted_version: Option<String>,
        record: bool,
        make: impl FnOnce(&Value) -> Result<Value, Response<Body>>,
    ) -> Response<Body> {
        let existing = {
            let inner = self.state.inner.lock().unwrap();
            match inner.objects.get(&self.key, self.namespace(), name) {
                Some(o) => o.clone(),
                None => return not_found(&self.resource, name),
            }
        };
        if let Some(wanted) = wanted_version.filter(|v| !v.is_empty())
            && existing["metadata"]["resourceVersion"].as_str() != Some(&wanted)
        {
            return self.conflict(name);
        }
        let mut object = match make(&existing) {
            Ok(o) => o,
            Err(r) => return r,
        };
        self.normalise(&mut object);
        // Only `/status` changes status; only the main resource changes the rest.
        if self.subresource.as_deref() == Some("status") {
            let status = object.get("status").cloned();
            let managed = object["metadata"]["managedFields"].clone();
            object = existing.clone();
            object["metadata"]["managedFields"] = managed;
            match status {
                Some(status) => object["status"] = status,
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        } else if self.resource.status {
            match existing.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        for key in ["uid", "creationTimestamp", "generation"] {
            object["metadata"][key] = existing["metadata"][key].clone();
        }
        if !record {
            // Server-side apply kept managedFields itself.
        } else {
            object["metadata"]["managedFields"] = existing["metadata"]["managedFields"].clone();
        }
        let warnings = match self.check(name, &mut object) {
            Ok(w) => w,
            Err(r) => return r,
        };
        if spec_changed(&existing, &object) {
            let generation = existing["metadata"]["generation"].as_i64().unwrap_or(1);
            object["metadata"]["generation"] = json!(generation + 1);
        }
        let now = now();
        if record {
            fields::record_update(
                Some(&existing),
                &mut object,
                &self.manager(),
                self.subresource.as_deref(),
                &self.resource.api_version(),
                &now,
            );
        }
        let mut inner = self.state.inner.lock().unwrap();
        let current = inner.objects.get(&self.key, self.namespace(), name);
        if current.map(|c| &c["metadata"]["resourceVersion"])
            != Some(&existing["metadata"]["resourceVersion"])
        {
            // Changed by someone else meanwhile.
            return self.conflict(name);
        }
        if !self.dry_run() {
            if self.resource.kind == "CustomResourceDefinition" {
                inner.types.set_crd(&object);
            }
            object = inner.objects.put(&self.key, self.namespace(), name, object);
        }
        with_warnings(
            json_response(StatusCode::OK, &self.shown(object)),
            &warnings,
        )
    }

    fn conflict(&self, name: &str) -> Response<Body> {
        failure(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                self.resource.qualified()
            ),
            json!({"name": name, "group": self.resource.group, "kind": self.resource.plural}),
        )
    }

    fn delete(&self, name: &str) -> Response<Body> {
        self.log("DELETE", "");
        let mut inner = self.state.inner.lock().unwrap();
        if self.dry_run() {
            return match inner.objects.get(&self.key, self.namespace(), name) {
                Some(o) => json_response(StatusCode::OK, &self.shown(o.clone())),
                None => not_found(&self.resource, name),
            };
        }
        let Some(object) = inner.objects.delete(&self.key, self.namespace(), name) else {
            return not_found(&self.resource, name);
        };
        match self.resource.kind.as_str() {
            "CustomResourceDefinition" => {
                let group = object["spec"]["group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let plural = object["spec"]["names"]["plural"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                inner.types.remove_crd(&group, &plural);
                let key = (group, plural);
                let names: Vec<(String, String)> = inner
                    .objects
                    .list(&key, None)
                    .iter()
                    .map(|o| meta_name(o))
                    .collect();
                for (ns, n) in names {
                    inner.objects.delete(&key, &ns, &n);
                }
            }
            "Namespace" if self.resource.group.is_empty() => {
                inner.objects.delete_namespace(name);
            }
            _ => {}
        }
        json_response(StatusCode::OK, &self.shown(object))
    }
}

fn meta_name(object: &Value) -> (String, String) {
    (
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Whether anything besides metadata and status changed: what bumps `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            for key in ["metadata", "status", "apiVersion", "kind"] {
                map.remove(key);
            }
        }
        v
    };
    strip(old) != strip(new)
}

fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for warning in warnings {
        if let Ok(value) = http::HeaderValue::from_str(&format!("299 - \"{warning}\"")) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

fn line(event: &Value) -> Bytes {
    let mut text = event.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// RFC 6902, the operations kubectl and client libraries send.
fn apply_json_patch(object: &mut Value, patch: &Value) -> Result<(), String> {
    for operation in patch.as_array().ok_or("a JSON patch must be a list")? {
        let op = operation["op"].as_str().unwrap_or_default();
        let path = operation["path"].as_str().unwrap_or_default();
        let (parent_path, last) = path.rsplit_once('/').ok_or("bad path")?;
        let last = last.replace("~1", "/").replace("~0", "~");
        match op {
            "test" => {
                if object.pointer(path) != Some(&operation["value"]) {
                    return Err(format!("the test of {path} failed"));
                }
            }
            "remove" => {
                let parent = object.pointer_mut(parent_path).ok_or("no such path")?;
                match parent {
                    Value::Object(map) => {
                        map.remove(&last).ok_or("no such field")?;
                    }
                    Value::Array(items) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if i >= items.len() {
                            return Err("no such index".into());
                        }
                        items.remove(i);
                    }
                    _ => return Err("no such path".into()),
                }
            }
            "add" | "replace" => {
                let value = operation["value"].clone();
                let parent = object.pointer_mut(parent_path).ok_or("no such path")?;
                match parent {
                    Value::Object(map) => {
                        map.insert(last, value);
                    }
                    Value::Array(items) if last == "-" => items.push(value),
                    Value::Array(items) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if op == "add" && i <= items.len() {
                            items.insert(i, value);
                        } else if i < items.len() {
                            items[i] = value;
                        } else {
                            return Err("no such index".into());
                        }
                    }
                    _ => return Err("no such path".into()),
                }
            }
            other => return Err(format!("the fake API server does not do {other:?}")),
        }
    }
    Ok(())
}

/// Used at start-up, before anyone connects.
pub fn create_namespace(state: &State, name: &str) {
    let mut inner = state.inner.lock().unwrap();
    let uid = inner.objects.uid();
    let object = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "uid": uid, "creationTimestamp": now(), "generation": 1},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    });
    inner
        .objects
        .put(&(String::new(), "namespaces".to_owned()), "", name, object);
}
