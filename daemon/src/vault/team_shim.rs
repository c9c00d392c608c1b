//! TEMPORARY: stand-ins for `vault/team.rs` (being written on main) so that
//! enrolment compiles before it lands. Deleted at the merge.

use coffer_crdt::state::TeamState;
use coffer_crdt::{DeviceId, DeviceKeys, Envelope, RosterOp, SpaceId, UserId};
use coffer_ipc::Event;
use rand_core::CryptoRngCore;

use super::{Now, Vault, VaultError};

fn not_yet() -> VaultError {
    VaultError::NotFound("teams are not available in this build yet".into())
}

impl Vault {
    pub fn team_id(&self) -> Option<SpaceId> {
        None
    }

    pub fn team_state(&self) -> Option<&TeamState> {
        None
    }

    pub fn my_user(&self) -> Option<UserId> {
        UserId::new(&self.identity()?.email)
    }

    pub(super) fn roster_write_ops(
        &mut self,
        _ops: Vec<RosterOp>,
        _rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<Event>, VaultError> {
        Err(not_yet())
    }

    pub fn roster_bytes(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }

    pub fn adopt_team(
        &mut self,
        _team: SpaceId,
        _roster: Vec<Envelope>,
    ) -> Result<Vec<Event>, VaultError> {
        Err(not_yet())
    }

    pub fn init_with_keys(
        &mut self,
        _name: &str,
        _email: &str,
        _pin: &str,
        _keys: DeviceKeys,
        _now: Now,
        _rng: &mut impl CryptoRngCore,
    ) -> Result<(DeviceId, SpaceId), VaultError> {
        Err(not_yet())
    }
}
