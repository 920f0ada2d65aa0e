//! The cases file `gantry plugin test` reads: the requests to send, the upstream's canned
//! answers, and what each case expects. Unknown fields are refused, so a typo is not a case that
//! checks nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CasesFile {
    #[serde(default)]
    pub(super) config: Option<serde_json::Value>,
    pub(super) cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Case {
    pub(super) name: String,
    /// A configuration of its own (a new plugin) instead of the file's.
    #[serde(default)]
    pub(super) config: Option<serde_json::Value>,
    /// Send the request this many times, each expected to get the same.
    #[serde(default = "one")]
    pub(super) repeat: u32,
    #[serde(default)]
    pub(super) request: RequestSpec,
    #[serde(default)]
    pub(super) upstream: UpstreamSpec,
    #[serde(default)]
    pub(super) expect: Expect,
}

pub(super) fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RequestSpec {
    #[serde(default = "get")]
    pub(super) method: String,
    #[serde(default = "root")]
    pub(super) path: String,
    #[serde(default = "example_host")]
    pub(super) host: String,
    #[serde(default)]
    pub(super) https: bool,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) body: String,
    /// The client's address (the connection's peer).
    #[serde(default = "loopback")]
    pub(super) client: IpAddr,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: get(),
            path: root(),
            host: example_host(),
            https: false,
            headers: BTreeMap::new(),
            body: String::new(),
            client: loopback(),
        }
    }
}

pub(super) fn get() -> String {
    "GET".to_owned()
}

pub(super) fn root() -> String {
    "/".to_owned()
}

pub(super) fn example_host() -> String {
    "example.test".to_owned()
}

pub(super) fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// What the upstream answers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct UpstreamSpec {
    #[serde(default = "ok")]
    pub(super) status: u16,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default = "ok_body")]
    pub(super) body: String,
}

impl Default for UpstreamSpec {
    fn default() -> Self {
        UpstreamSpec {
            status: ok(),
            headers: BTreeMap::new(),
            body: ok_body(),
        }
    }
}

pub(super) fn ok() -> u16 {
    200
}

pub(super) fn ok_body() -> String {
    "from the upstream\n".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Expect {
    /// The status the client gets.
    #[serde(default)]
    pub(super) status: Option<u16>,
    /// Response headers the client gets, with these values (`"*"`: any value).
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    /// Response headers the client must not get.
    #[serde(default)]
    pub(super) absent: Vec<String>,
    #[serde(default)]
    pub(super) body: Option<String>,
    /// Whether the request reached the upstream.
    #[serde(default)]
    pub(super) reached_upstream: Option<bool>,
    /// The request as the upstream got it.
    #[serde(default)]
    pub(super) upstream: Option<ExpectUpstream>,
    /// The plugin must refuse its configuration, with this text in the problem.
    #[serde(default)]
    pub(super) config_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ExpectUpstream {
    #[serde(default)]
    pub(super) method: Option<String>,
    /// Path and query.
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) absent: Vec<String>,
    #[serde(default)]
    pub(super) body: Option<String>,
}
