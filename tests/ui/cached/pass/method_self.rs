use cache_core::cached;

struct Repo {
    id: u32,
    name: String,
}

impl Repo {
    #[cached(key = "repo:{self.id}:{n}")]
    async fn describe(&self, n: u32) -> String {
        format!("{} #{n}", self.name)
    }

    #[cached(key = "repo-name:{self.name}")]
    fn name_len(&self) -> usize {
        self.name.len()
    }

    /// The default key of a method holds `Self`'s type; `self` itself is not hashed.
    #[cached]
    fn plus(&self, n: u32) -> u32 {
        self.id + n
    }

    #[cached]
    fn load(id: u32) -> Option<Self> {
        Some(Repo {
            id,
            name: String::new(),
        })
    }

    #[cached(key = "{self}")]
    fn owned(self) -> u32 {
        self.id
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.id)
    }
}

impl Clone for Repo {
    fn clone(&self) -> Self {
        Repo {
            id: self.id,
            name: self.name.clone(),
        }
    }
}

trait Describe {
    fn id(&self) -> u32;

    #[cached(key = "describe:{n}")]
    fn describe_default(&self, n: u32) -> String {
        format!("{}:{n}", self.id())
    }
}

impl Describe for Repo {
    fn id(&self) -> u32 {
        self.id
    }
}

fn main() {
    let repo = Repo {
        id: 1,
        name: "cache".to_owned(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(repo.describe(2)), "cache #2");
    assert_eq!(repo.name_len(), 5);
    assert_eq!(repo.plus(1), 2);
    assert_eq!(Repo::load(3).map(|r| r.id), Some(3));
    assert_eq!(repo.describe_default(4), "1:4");
    assert_eq!(repo.owned(), 1);
}
