//! The window's tabs, as a list the toolbar, the command line and the tests share.

/// The window's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Explore,
    Dream,
    Attack,
    Train,
}

impl Tab {
    pub const ALL: [Self; 4] = [Self::Explore, Self::Dream, Self::Attack, Self::Train];

    pub fn label(self) -> &'static str {
        match self {
            Self::Explore => "Explore",
            Self::Dream => "Dream",
            Self::Attack => "Attack",
            Self::Train => "Train",
        }
    }
}
