//! Event-based invalidation: name an event once with the keys, tags and patterns it makes stale,
//! then fire it with arguments wherever the data changes.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use cache_core::{CacheManager, Event, EventArgs};
//!
//! let manager = CacheManager::builder().build();
//! manager.register_event(
//!     Event::new("user_update", ["user_id"])
//!         .key("users", "user:{user_id}")
//!         .pattern("videos", "user:{user_id}:*")
//!         .tag("user:{user_id}"),
//! )?;
//! manager.cache("users").set("user:7", "Ada".to_string()).await;
//! manager.fire("user_update", &EventArgs::new().arg("user_id", 7)).await?;
//! assert_eq!(manager.cache("users").get::<String>("user:7").await, None);
//! # Ok::<(), cache_core::EventError>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::fmt;

use crate::key::template::{Render, Template, TemplateError};

/// What an event invalidates.
#[derive(Clone, Debug)]
enum Target {
    Key { cache: String, template: String },
    Pattern { cache: String, template: String },
    Tag { template: String },
    Cache { cache: String },
}

/// A named invalidation event and its targets. Register it with
/// [`CacheManager::register_event`](crate::CacheManager::register_event).
///
/// ```
/// use cache_core::{CacheManager, Event};
///
/// let manager = CacheManager::builder().build();
/// manager.register_event(Event::new("user_update", ["user_id"]).key("users", "user:{user_id}"))?;
/// # Ok::<(), cache_core::EventError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Event {
    name: String,
    params: Vec<String>,
    targets: Vec<Target>,
}

impl Event {
    /// An event with its parameter names; every placeholder in a target must be one of them.
    ///
    /// ```
    /// use cache_core::{CacheManager, Event, EventError};
    ///
    /// let manager = CacheManager::builder().build();
    /// let typo = Event::new("user_update", ["user_id"]).key("users", "user:{id}");
    /// assert!(matches!(manager.register_event(typo), Err(EventError::UnknownPlaceholder { .. })));
    /// ```
    pub fn new<P: Into<String>>(
        name: impl Into<String>,
        params: impl IntoIterator<Item = P>,
    ) -> Self {
        Event {
            name: name.into(),
            params: params.into_iter().map(Into::into).collect(),
            targets: Vec::new(),
        }
    }

    /// Invalidates one key (a template over the parameters) in a named cache.
    ///
    /// ```
    /// use cache_core::{CacheManager, Event, EventArgs};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// manager.register_event(Event::new("user_update", ["id"]).key("users", "user:{id}"))?;
    /// manager.cache("users").set("user:7", 7_u32).await;
    /// assert_eq!(manager.fire("user_update", &EventArgs::new().arg("id", 7)).await?, 1);
    /// # Ok::<(), cache_core::EventError>(())
    /// # }).unwrap();
    /// ```
    pub fn key(mut self, cache: impl Into<String>, template: impl Into<String>) -> Self {
        self.targets.push(Target::Key {
            cache: cache.into(),
            template: template.into(),
        });
        self
    }

    /// Invalidates the keys of a named cache matching a glob; parameter values are escaped, so
    /// they match only themselves.
    ///
    /// ```
    /// use cache_core::{CacheManager, Event, EventArgs};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// manager.register_event(Event::new("user_update", ["id"]).pattern("videos", "user:{id}:*"))?;
    /// let videos = manager.cache("videos");
    /// videos.set("user:7:a", 1_u8).await;
    /// videos.set("user:7:b", 2_u8).await;
    /// videos.set("user:8:a", 3_u8).await;
    /// assert_eq!(manager.fire("user_update", &EventArgs::new().arg("id", 7)).await?, 2);
    /// # Ok::<(), cache_core::EventError>(())
    /// # }).unwrap();
    /// ```
    pub fn pattern(mut self, cache: impl Into<String>, template: impl Into<String>) -> Self {
        self.targets.push(Target::Pattern {
            cache: cache.into(),
            template: template.into(),
        });
        self
    }

    /// Invalidates every entry, in every cache, carrying this tag.
    ///
    /// ```
    /// use cache_core::{CacheManager, EntryOptions, Event, EventArgs};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// manager.register_event(Event::new("team_update", ["team"]).tag("team:{team}"))?;
    /// let tagged = EntryOptions::new().tag("team:3");
    /// manager.cache("members").set_with("member:1", 1_u8, tagged).await;
    /// assert_eq!(manager.fire("team_update", &EventArgs::new().arg("team", 3)).await?, 1);
    /// # Ok::<(), cache_core::EventError>(())
    /// # }).unwrap();
    /// ```
    pub fn tag(mut self, template: impl Into<String>) -> Self {
        self.targets.push(Target::Tag {
            template: template.into(),
        });
        self
    }

    /// Empties a named cache.
    ///
    /// ```
    /// use cache_core::{CacheManager, Event, EventArgs};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// manager.register_event(Event::new("reindex", Vec::<String>::new()).cache("search"))?;
    /// manager.cache("search").set("q:rust", 1_u8).await;
    /// assert_eq!(manager.fire("reindex", &EventArgs::new()).await?, 1);
    /// # Ok::<(), cache_core::EventError>(())
    /// # }).unwrap();
    /// ```
    pub fn cache(mut self, cache: impl Into<String>) -> Self {
        self.targets.push(Target::Cache {
            cache: cache.into(),
        });
        self
    }
}

/// The arguments an event is fired with.
///
/// ```
/// use cache_core::EventArgs;
///
/// let args = EventArgs::new().arg("user_id", 7).arg("region", "eu");
/// # drop(args);
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct EventArgs {
    values: Vec<(String, String)>,
}

impl EventArgs {
    /// No arguments.
    ///
    /// ```
    /// use cache_core::{CacheManager, Event, EventArgs};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// manager.register_event(Event::new("flush", Vec::<String>::new()).cache("c"))?;
    /// assert_eq!(manager.fire("flush", &EventArgs::new()).await?, 0);
    /// # Ok::<(), cache_core::EventError>(())
    /// # }).unwrap();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an argument; its `Display` output is what the templates see.
    ///
    /// ```
    /// use cache_core::{CacheManager, Event, EventArgs, EventError};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// manager.register_event(Event::new("user_update", ["id"]).key("users", "user:{id}"))?;
    /// let typo = EventArgs::new().arg("user_id", 7);
    /// let err = manager.fire("user_update", &typo).await.unwrap_err();
    /// assert!(matches!(
    ///     err,
    ///     EventError::MissingArgument { .. } | EventError::UnexpectedArgument { .. }
    /// ));
    /// # Ok::<(), cache_core::EventError>(())
    /// # }).unwrap();
    /// ```
    pub fn arg(mut self, name: impl Into<String>, value: impl fmt::Display) -> Self {
        self.values.push((name.into(), value.to_string()));
        self
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why registering or firing an event failed.
///
/// ```
/// use cache_core::{CacheManager, EventArgs, EventError};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let manager = CacheManager::builder().build();
/// let err = manager.fire("nobody_registered_this", &EventArgs::new()).await.unwrap_err();
/// assert_eq!(err, EventError::UnknownEvent("nobody_registered_this".into()));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// A target's template does not parse.
    Template(TemplateError),
    /// A target names a placeholder that is not one of the event's parameters.
    UnknownPlaceholder {
        /// The event.
        event: String,
        /// The template.
        template: String,
        /// The placeholder.
        placeholder: String,
        /// The parameters it could have named.
        params: Vec<String>,
    },
    /// No event of this name is registered.
    UnknownEvent(String),
    /// The event was fired without one of its parameters.
    MissingArgument {
        /// The event.
        event: String,
        /// The parameter.
        param: String,
    },
    /// The event was fired with an argument it does not declare (most likely a typo).
    UnexpectedArgument {
        /// The event.
        event: String,
        /// The argument.
        arg: String,
    },
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Template(e) => e.fmt(f),
            EventError::UnknownPlaceholder {
                event,
                template,
                placeholder,
                params,
            } => write!(
                f,
                "event `{event}`: template `{template}` uses `{{{placeholder}}}`, which is not a parameter of the event (parameters: {})",
                list(params)
            ),
            EventError::UnknownEvent(name) => {
                write!(f, "no invalidation event named `{name}` is registered")
            }
            EventError::MissingArgument { event, param } => {
                write!(
                    f,
                    "event `{event}` was fired without its argument `{param}`"
                )
            }
            EventError::UnexpectedArgument { event, arg } => {
                write!(f, "event `{event}` has no parameter `{arg}`")
            }
        }
    }
}

fn list(params: &[String]) -> String {
    if params.is_empty() {
        "none".into()
    } else {
        params
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::error::Error for EventError {}

/// A validated event, its templates parsed.
#[derive(Debug)]
pub(crate) struct CompiledEvent {
    name: String,
    params: Vec<String>,
    targets: Vec<(Target, Option<Template>)>,
}

/// One concrete invalidation an event firing resolves to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Key { cache: String, key: String },
    Pattern { cache: String, pattern: String },
    Tag(String),
    Cache(String),
}

impl CompiledEvent {
    pub(crate) fn compile(event: Event) -> Result<Self, EventError> {
        let mut targets = Vec::new();
        for target in event.targets {
            let template = match &target {
                Target::Key { template, .. }
                | Target::Pattern { template, .. }
                | Target::Tag { template } => {
                    let t = Template::parse(template).map_err(EventError::Template)?;
                    if let Some(unknown) = t
                        .placeholders()
                        .find(|p| !event.params.iter().any(|q| q == p))
                    {
                        return Err(EventError::UnknownPlaceholder {
                            event: event.name.clone(),
                            template: template.clone(),
                            placeholder: unknown.to_owned(),
                            params: event.params.clone(),
                        });
                    }
                    Some(t)
                }
                Target::Cache { .. } => None,
            };
            targets.push((target, template));
        }
        Ok(CompiledEvent {
            name: event.name,
            params: event.params,
            targets,
        })
    }

    pub(crate) fn resolve(&self, args: &EventArgs) -> Result<Vec<Action>, EventError> {
        if let Some(param) = self.params.iter().find(|p| args.get(p).is_none()) {
            return Err(EventError::MissingArgument {
                event: self.name.clone(),
                param: param.clone(),
            });
        }
        if let Some((arg, _)) = args.values.iter().find(|(n, _)| !self.params.contains(n)) {
            return Err(EventError::UnexpectedArgument {
                event: self.name.clone(),
                arg: arg.clone(),
            });
        }
        let render = |t: &Option<Template>, mode| {
            t.as_ref()
                .and_then(|t| t.render(mode, |name| args.get(name)))
                .unwrap_or_default()
        };
        Ok(self
            .targets
            .iter()
            .map(|(target, t)| match target {
                Target::Key { cache, .. } => Action::Key {
                    cache: cache.clone(),
                    key: render(t, Render::Key),
                },
                Target::Pattern { cache, .. } => Action::Pattern {
                    cache: cache.clone(),
                    pattern: render(t, Render::Pattern),
                },
                Target::Tag { .. } => Action::Tag(render(t, Render::Key)),
                Target::Cache { cache } => Action::Cache(cache.clone()),
            })
            .collect())
    }
}

/// The registry of a manager.
#[derive(Debug, Default)]
pub(crate) struct EventRegistry {
    events: HashMap<String, CompiledEvent>,
}

impl EventRegistry {
    pub(crate) fn register(&mut self, event: Event) -> Result<(), EventError> {
        let compiled = CompiledEvent::compile(event)?;
        self.events.insert(compiled.name.clone(), compiled);
        Ok(())
    }

    pub(crate) fn resolve(&self, name: &str, args: &EventArgs) -> Result<Vec<Action>, EventError> {
        self.events
            .get(name)
            .ok_or_else(|| EventError::UnknownEvent(name.to_owned()))?
            .resolve(args)
    }
}
