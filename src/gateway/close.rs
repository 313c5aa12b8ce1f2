//! Close reasons as data: each way a socket can end, with its RFC 6455 or
//! PROTOCOL.md close code.

/// Why a socket is closed by the server (or was closed by the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// 1000: normal close (the peer asked).
    Normal,
    /// 1001: the gateway is shutting down.
    GoingAway,
    /// 1002: RFC 6455 protocol error.
    Protocol,
    /// 1003: a binary frame was sent.
    Unsupported,
    /// 1007: invalid UTF-8 in a text frame.
    InvalidData,
    /// 1008: over the rate limit for too long.
    Policy,
    /// 1009: a frame or message over the limit.
    TooBig,
    /// 1011: an unexpected condition in the server.
    Internal,
    /// 4001: the session ended.
    SessionEnded,
    /// 4002: the outbound queue overflowed.
    SlowConsumer,
    /// 4003: no pong to the server's pings.
    HeartbeatTimeout,
    /// The connection broke without a closing handshake; nothing to send.
    Gone,
}

impl CloseReason {
    /// Every reason, for metrics labels.
    pub const ALL: [CloseReason; 12] = [
        Self::Normal,
        Self::GoingAway,
        Self::Protocol,
        Self::Unsupported,
        Self::InvalidData,
        Self::Policy,
        Self::TooBig,
        Self::Internal,
        Self::SessionEnded,
        Self::SlowConsumer,
        Self::HeartbeatTimeout,
        Self::Gone,
    ];

    /// The close code (0 for [`CloseReason::Gone`]).
    pub const fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::Protocol => 1002,
            Self::Unsupported => 1003,
            Self::InvalidData => 1007,
            Self::Policy => 1008,
            Self::TooBig => 1009,
            Self::Internal => 1011,
            Self::SessionEnded => 4001,
            Self::SlowConsumer => 4002,
            Self::HeartbeatTimeout => 4003,
            Self::Gone => 0,
        }
    }

    /// The reason text sent in the close frame.
    pub const fn text(self) -> &'static str {
        match self {
            Self::Normal => "bye",
            Self::GoingAway => "server shutting down",
            Self::Protocol => "protocol error",
            Self::Unsupported => "binary frames are not supported",
            Self::InvalidData => "invalid UTF-8",
            Self::Policy => "rate limit exceeded",
            Self::TooBig => "message too large",
            Self::Internal => "internal error",
            Self::SessionEnded => "session ended",
            Self::SlowConsumer => "slow consumer",
            Self::HeartbeatTimeout => "heartbeat timeout",
            Self::Gone => "",
        }
    }

    /// Metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Normal => "1000",
            Self::GoingAway => "1001",
            Self::Protocol => "1002",
            Self::Unsupported => "1003",
            Self::InvalidData => "1007",
            Self::Policy => "1008",
            Self::TooBig => "1009",
            Self::Internal => "1011",
            Self::SessionEnded => "4001",
            Self::SlowConsumer => "4002",
            Self::HeartbeatTimeout => "4003",
            Self::Gone => "gone",
        }
    }

    /// The reason for a code set on a connection (0: none).
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.code() == code && code != 0)
    }
}

/// Metrics labels of [`CloseReason::ALL`].
pub const CLOSE_LABELS: &[&str] = &[
    "1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "4001", "4002", "4003", "gone",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for r in CloseReason::ALL {
            if r != CloseReason::Gone {
                assert_eq!(CloseReason::from_code(r.code()), Some(r));
            }
            assert!(CLOSE_LABELS.contains(&r.label()));
        }
        assert_eq!(CloseReason::from_code(0), None);
        assert_eq!(CloseReason::SlowConsumer.code(), 4002);
    }
}
