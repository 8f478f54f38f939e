//! Domain core of rdp-proxy: identifiers, the session state machine, the control lease and
//! the attach-token rules. Nothing here performs I/O or reads the clock; callers pass time in.

pub mod access;
pub mod audit;
pub mod geometry;
pub mod ids;
pub mod input;
pub mod lease;
pub mod node;
pub mod placement;
pub mod session;
pub mod token;

pub use geometry::Rect;
pub use ids::{FencingToken, NodeId, OrgId, SessionId, TargetId, UserId, ViewerId, WorkerId};
pub use input::{InputEvent, MouseButton};
pub use session::{SessionState, TransitionError};
