//! `/nodes/{node}/qemu/{vmid}/{vncproxy,termproxy,vncwebsocket}`: a guest's consoles, as
//! Proxmox VE opens them (the sessions and tickets live in `crate::console`).

use super::*;
use crate::console::{serial_port, ConsoleKind};
use ferrox_api::core::local_node;
use ferrox_api::schema::{int, BOOL, STRING};
use ferrox_api::websocket::Accepted;
use ferrox_api::{Method, Param, ParamType, Permission};
use ferrox_api_types::qemu::ConsoleTicket;

const VM_CONSOLE: Permission = Permission::Privs {
    path: "/vms/{vmid}",
    privs: &["VM.Console"],
    any: false,
};

mod param {
    use super::*;
    pub const WEBSOCKET: Param = Param::optional(
        "websocket",
        BOOL,
        "Prepare for a websocket connection (the only kind served).",
    );
    pub const GENERATE_PASSWORD: Param = Param::optional(
        "generate-password",
        BOOL,
        "Set a generated 8-character VNC password (returned as 'password') instead of the ticket.",
    );
    pub const SERIAL: Param = Param::optional(
        "serial",
        ParamType::Enum(&["serial0", "serial1", "serial2", "serial3"]),
        "The serial port (default: the first 'serialN: socket').",
    );
    pub const PORT: Param = Param::required(
        "port",
        int(Some(5900), Some(5999)),
        "The port from vncproxy/termproxy.",
    );
    pub const VNCTICKET: Param =
        Param::required("vncticket", STRING, "The ticket from vncproxy/termproxy.");
}

fn vncproxy(ctx: &C<'_>) -> Result<ConsoleTicket, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let generate = ctx.params.bool(&param::GENERATE_PASSWORD).unwrap_or(false);
    ctx.state
        .open_console(vmid, ConsoleKind::Vnc, &auth_id(ctx)?, generate)
}

fn termproxy(ctx: &C<'_>) -> Result<ConsoleTicket, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let cfg = ctx.state.guest_config(vmid)?;
    let index = serial_port(&cfg, ctx.params.str(&param::SERIAL))?;
    ctx.state
        .open_console(vmid, ConsoleKind::Serial(index), &auth_id(ctx)?, false)
}

fn vncwebsocket(ctx: &C<'_>) -> Result<Accepted, ApiError> {
    local_node(ctx)?;
    let vmid = vmid(ctx)?;
    let port = ctx.params.need_int(&param::PORT)? as u16;
    let ticket = ctx.params.need_str(&param::VNCTICKET)?;
    ctx.state.accept_console(vmid, port, ticket, &auth_id(ctx)?)
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    vec![
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/vncproxy",
            "Open the VM's display: a one-time VNC ticket for vncwebsocket.",
            VM_CONSOLE,
            vncproxy,
        )
        .params(vec![NODE, VMID, param::WEBSOCKET, param::GENERATE_PASSWORD]),
        Endpoint::new(
            Post,
            "/nodes/{node}/qemu/{vmid}/termproxy",
            "Open the VM's serial console: a one-time ticket for vncwebsocket (termproxy protocol).",
            VM_CONSOLE,
            termproxy,
        )
        .params(vec![NODE, VMID, param::SERIAL]),
        Endpoint::new(
            Get,
            "/nodes/{node}/qemu/{vmid}/vncwebsocket",
            "Connect the websocket to the console vncproxy or termproxy opened (once).",
            VM_CONSOLE,
            vncwebsocket,
        )
        .params(vec![NODE, VMID, param::PORT, param::VNCTICKET]),
    ]
}
