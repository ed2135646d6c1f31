//! The WASI preview1 subset Envoy (proxy-wasm-cpp-host) provides. Anything else a module imports
//! from `wasi_snapshot_preview1` fails the load with its name.

use crate::abi::LogLevel;
use crate::host::{read, write};
use crate::worker::WorkerData;
use wasmtime::{Caller, Linker};

type C<'a> = Caller<'a, WorkerData>;

const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const ENOSYS: i32 = 52;

pub const MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

fn u32_at(c: &mut C<'_>, ptr: u32) -> Option<u32> {
    let b = read(c, ptr as i32, 4).ok()?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

pub fn add_to_linker(linker: &mut Linker<WorkerData>) -> wasmtime::Result<()> {
    for m in MODULES {
        linker.func_wrap(m, "fd_write", |mut c: C<'_>, fd: i32, iovs: i32, n: i32, written: i32| {
            let mut out = Vec::new();
            for i in 0..n.max(0) as u32 {
                let at = (iovs as u32).wrapping_add(i * 8);
                let (Some(ptr), Some(len)) = (u32_at(&mut c, at), u32_at(&mut c, at + 4)) else { return Ok(EFAULT) };
                match read(&mut c, ptr as i32, len as i32) {
                    Ok(b) => out.extend(b),
                    Err(_) => return Ok(EFAULT),
                }
            }
            let level = match fd {
                1 => LogLevel::Info,
                2 => LogLevel::Error,
                _ => return Ok(EBADF),
            };
            let text = String::from_utf8_lossy(&out).trim_end_matches('\n').to_owned();
            c.data().world.log(c.data().index, level, text);
            if write(&mut c, written as u32, &(out.len() as u32).to_le_bytes()).is_err() {
                return Ok(EFAULT);
            }
            Ok::<i32, wasmtime::Error>(SUCCESS)
        })?;
        linker.func_wrap(m, "fd_read", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| Ok(EBADF))?;
        linker.func_wrap(m, "fd_seek", |_: C<'_>, _: i32, _: i64, _: i32, _: i32| Ok(EBADF))?;
        linker.func_wrap(m, "fd_close", |_: C<'_>, _: i32| Ok(EBADF))?;
        linker.func_wrap(m, "fd_fdstat_get", |mut c: C<'_>, fd: i32, buf: i32| {
            if !(0..=2).contains(&fd) {
                return Ok(EBADF);
            }
            // filetype character device, no flags, no rights
            let mut stat = [0u8; 24];
            stat[0] = 2;
            Ok(if write(&mut c, buf as u32, &stat).is_ok() { SUCCESS } else { EFAULT })
        })?;
        linker.func_wrap(m, "fd_prestat_get", |_: C<'_>, _: i32, _: i32| Ok(EBADF))?;
        linker.func_wrap(m, "fd_prestat_dir_name", |_: C<'_>, _: i32, _: i32, _: i32| Ok(EBADF))?;
        // The VM's environment (PluginOptions::env); no arguments.
        linker.func_wrap(m, "environ_sizes_get", |mut c: C<'_>, count: i32, size: i32| {
            let env = c.data().info.env.clone();
            let bytes: usize = env.iter().map(|e| e.len() + 1).sum();
            let ok = write(&mut c, count as u32, &(env.len() as u32).to_le_bytes()).is_ok()
                && write(&mut c, size as u32, &(bytes as u32).to_le_bytes()).is_ok();
            Ok(if ok { SUCCESS } else { EFAULT })
        })?;
        linker.func_wrap(m, "environ_get", |mut c: C<'_>, pointers: i32, buffer: i32| {
            let env = c.data().info.env.clone();
            let mut at = buffer as u32;
            for (i, e) in env.iter().enumerate() {
                let mut entry = e.as_bytes().to_vec();
                entry.push(0);
                let ok = write(&mut c, (pointers as u32).wrapping_add(4 * i as u32), &at.to_le_bytes()).is_ok()
                    && write(&mut c, at, &entry).is_ok();
                if !ok {
                    return Ok(EFAULT);
                }
                at = at.wrapping_add(entry.len() as u32);
            }
            Ok(SUCCESS)
        })?;
        linker.func_wrap(m, "args_sizes_get", |mut c: C<'_>, count: i32, size: i32| {
            let ok = write(&mut c, count as u32, &0u32.to_le_bytes()).is_ok()
                && write(&mut c, size as u32, &0u32.to_le_bytes()).is_ok();
            Ok(if ok { SUCCESS } else { EFAULT })
        })?;
        linker.func_wrap(m, "args_get", |_: C<'_>, _: i32, _: i32| Ok(SUCCESS))?;
        linker.func_wrap(m, "clock_time_get", |mut c: C<'_>, _id: i32, _precision: i64, ret: i32| {
            let now = c.data().world.now_ns.get();
            Ok(if write(&mut c, ret as u32, &now.to_le_bytes()).is_ok() { SUCCESS } else { EFAULT })
        })?;
        linker.func_wrap(m, "clock_res_get", |mut c: C<'_>, _id: i32, ret: i32| {
            Ok(if write(&mut c, ret as u32, &1u64.to_le_bytes()).is_ok() { SUCCESS } else { EFAULT })
        })?;
        linker.func_wrap(m, "random_get", |mut c: C<'_>, buf: i32, len: i32| {
            let mut bytes = vec![0u8; len.max(0) as usize];
            c.data().world.fill_random(&mut bytes);
            Ok(if write(&mut c, buf as u32, &bytes).is_ok() { SUCCESS } else { EFAULT })
        })?;
        linker.func_wrap(m, "proc_exit", |_: C<'_>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(format!("module called proc_exit({code})")))
        })?;
        linker.func_wrap(m, "sched_yield", |_: C<'_>| Ok(SUCCESS))?;
        linker.func_wrap(m, "poll_oneoff", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| Ok(ENOSYS))?;
    }
    Ok(())
}
