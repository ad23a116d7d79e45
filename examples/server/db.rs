//! The demo's database: SQLite, created and seeded at start, with an artificial latency per query
//! so that caching has something to save, and a query counter so tests can see it did.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::AppError;
use crate::model::{Template, User, Video, VideoPage};

pub(crate) const USERS: u64 = 1_000;
pub(crate) const VIDEOS: u64 = 10_000;
pub(crate) const TEMPLATES: u64 = 50;
pub(crate) const PAGE_SIZE: u32 = 5;

pub(crate) struct Db {
    conn: Mutex<Connection>,
    latency: Duration,
    queries: AtomicU64,
}

impl Db {
    /// Opens (and seeds, if empty) the database: in memory, or the file at `path` so several
    /// server processes can share one.
    pub(crate) fn open(path: Option<&Path>, latency: Duration) -> rusqlite::Result<Arc<Db>> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        seed(&conn)?;
        Ok(Arc::new(Db {
            conn: Mutex::new(conn),
            latency,
            queries: AtomicU64::new(0),
        }))
    }

    /// Queries run so far.
    pub(crate) fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Runs one query after the configured latency, off the async worker threads.
    async fn query<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, AppError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = db.conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| AppError::Internal(e.to_string()))
    }

    pub(crate) async fn user(self: &Arc<Self>, id: u64) -> Result<User, AppError> {
        self.query(move |c| {
            c.query_row(
                "SELECT id, name, email FROM users WHERE id = ?1",
                [id],
                |r| {
                    Ok(User {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        email: r.get(2)?,
                    })
                },
            )
            .optional()
        })
        .await?
        .ok_or(AppError::NotFound("user", id))
    }

    pub(crate) async fn update_user(
        self: &Arc<Self>,
        id: u64,
        name: Option<String>,
        email: Option<String>,
    ) -> Result<(), AppError> {
        let changed = self
            .query(move |c| {
                c.execute(
                    "UPDATE users SET name = COALESCE(?2, name), email = COALESCE(?3, email) WHERE id = ?1",
                    params![id, name, email],
                )
            })
            .await?;
        if changed == 0 {
            return Err(AppError::NotFound("user", id));
        }
        Ok(())
    }

    pub(crate) async fn user_videos(
        self: &Arc<Self>,
        user_id: u64,
        page: u32,
    ) -> Result<VideoPage, AppError> {
        let offset = u64::from(page.saturating_sub(1)) * u64::from(PAGE_SIZE);
        let (exists, videos) = self
            .query(move |c| {
                let exists = c
                    .query_row("SELECT 1 FROM users WHERE id = ?1", [user_id], |_| Ok(()))
                    .optional()?
                    .is_some();
                let mut stmt = c.prepare(
                    "SELECT id, user_id, title, views FROM videos WHERE user_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
                )?;
                let videos = stmt
                    .query_map(params![user_id, PAGE_SIZE, offset], video_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((exists, videos))
            })
            .await?;
        if !exists {
            return Err(AppError::NotFound("user", user_id));
        }
        Ok(VideoPage {
            user_id,
            page,
            videos,
        })
    }

    pub(crate) async fn video(self: &Arc<Self>, id: u64) -> Result<Video, AppError> {
        self.query(move |c| {
            c.query_row(
                "SELECT id, user_id, title, views FROM videos WHERE id = ?1",
                [id],
                video_row,
            )
            .optional()
        })
        .await?
        .ok_or(AppError::NotFound("video", id))
    }

    pub(crate) async fn search(self: &Arc<Self>, q: String) -> Result<Vec<Video>, AppError> {
        self.query(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, user_id, title, views FROM videos WHERE title LIKE '%' || ?1 || '%' ESCAPE '\\' ORDER BY views DESC LIMIT 20",
            )?;
            let pattern = q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            stmt.query_map([pattern], video_row)?.collect()
        })
        .await
    }

    pub(crate) async fn template(self: &Arc<Self>, id: u64) -> Result<Template, AppError> {
        self.query(move |c| {
            c.query_row(
                "SELECT id, name, body FROM templates WHERE id = ?1",
                [id],
                |r| {
                    Ok(Template {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        body: r.get(2)?,
                    })
                },
            )
            .optional()
        })
        .await?
        .ok_or(AppError::NotFound("template", id))
    }
}

fn video_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Video> {
    Ok(Video {
        id: r.get(0)?,
        user_id: r.get(1)?,
        title: r.get(2)?,
        views: r.get(3)?,
    })
}

const TOPICS: &[&str] = &[
    "rust",
    "redis",
    "cooking",
    "travel",
    "music",
    "chess",
    "gardening",
    "physics",
    "running",
    "painting",
];

fn seed(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS videos (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, title TEXT NOT NULL, views INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS videos_by_user ON videos (user_id);
         CREATE TABLE IF NOT EXISTS templates (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL);",
    )?;
    let seeded: i64 = conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
    if seeded > 0 {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    {
        let mut users = tx.prepare("INSERT INTO users (id, name, email) VALUES (?1, ?2, ?3)")?;
        for id in 1..=USERS {
            users.execute(params![
                id,
                format!("User {id}"),
                format!("user{id}@example.com")
            ])?;
        }
        let mut videos =
            tx.prepare("INSERT INTO videos (id, user_id, title, views) VALUES (?1, ?2, ?3, ?4)")?;
        for id in 1..=VIDEOS {
            let topic = TOPICS[(id % TOPICS.len() as u64) as usize];
            videos.execute(params![
                id,
                (id - 1) % USERS + 1,
                format!("Video {id} about {topic}"),
                (id * 7919) % 100_000
            ])?;
        }
        let mut templates =
            tx.prepare("INSERT INTO templates (id, name, body) VALUES (?1, ?2, ?3)")?;
        for id in 1..=TEMPLATES {
            templates.execute(params![
                id,
                format!("template-{id}"),
                format!("<h1>{{{{title}}}}</h1><p>layout {id}</p>")
            ])?;
        }
    }
    tx.commit()
}
