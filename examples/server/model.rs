//! What the API returns. Serde both ways: the hybrid tier stores these in Redis.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) email: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Video {
    pub(crate) id: u64,
    pub(crate) user_id: u64,
    pub(crate) title: String,
    pub(crate) views: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct VideoPage {
    pub(crate) user_id: u64,
    pub(crate) page: u32,
    pub(crate) videos: Vec<Video>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Template {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) body: String,
}

/// The body of `PUT /users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPatch {
    pub(crate) name: Option<String>,
    pub(crate) email: Option<String>,
}
