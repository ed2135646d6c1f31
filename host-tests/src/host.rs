//! The proxy-wasm ABI 0.2.1 hostcalls (module `env`), with Envoy's observable behaviour.

use crate::abi::{self, LogLevel, MetricKind, Pairs, Status};
use crate::foreign;
use crate::worker::{LocalResponse, WorkerData};
use crate::world::{CallRecord, Fault, HookPoint};
use wasmtime::{Caller, Extern, Linker};

type C<'a> = Caller<'a, WorkerData>;
/// Inner result: a status for the module. Outer: a trap (from calling the module's allocator).
type HostResult = wasmtime::Result<Result<(), Status>>;

/// A failure a test injected for this hostcall (`Plugin::fail_hostcall`).
fn injected(c: &C<'_>, hostcall: &str) -> Option<Fault> {
    c.data().world.fault(hostcall)
}

fn code(r: HostResult) -> wasmtime::Result<i32> {
    Ok(match r? {
        Ok(()) => Status::Ok as i32,
        Err(s) => s as i32,
    })
}

fn memory(c: &mut C<'_>) -> Result<wasmtime::Memory, Status> {
    c.get_export("memory").and_then(Extern::into_memory).ok_or(Status::InvalidMemoryAccess)
}

pub fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let mem = memory(c)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let mut buf = vec![0u8; len];
    mem.read(&*c, ptr, &mut buf).map_err(|_| Status::InvalidMemoryAccess)?;
    Ok(buf)
}

fn read_str(c: &mut C<'_>, ptr: i32, len: i32) -> Result<String, Status> {
    String::from_utf8(read(c, ptr, len)?).map_err(|_| Status::BadArgument)
}

pub fn write(c: &mut C<'_>, ptr: u32, data: &[u8]) -> Result<(), Status> {
    let mem = memory(c)?;
    mem.write(&mut *c, ptr as usize, data).map_err(|_| Status::InvalidMemoryAccess)
}

fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> Result<(), Status> {
    write(c, ptr as u32, &v.to_le_bytes())
}

/// Copies `data` into memory the module allocates and stores pointer and size, as cpp-host's
/// `copyToPointerSize` does (empty data: null pointer, size 0).
pub fn return_bytes(c: &mut C<'_>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> HostResult {
    let mut ptr = 0u32;
    if !data.is_empty() {
        let alloc = c
            .get_export("proxy_on_memory_allocate")
            .or_else(|| c.get_export("malloc"))
            .and_then(Extern::into_func)
            .ok_or_else(|| wasmtime::Error::msg("module exports no proxy_on_memory_allocate/malloc"))?;
        let alloc = alloc.typed::<i32, i32>(&*c)?;
        ptr = alloc.call(&mut *c, data.len() as i32)? as u32;
        if ptr == 0 {
            return Ok(Err(Status::InvalidMemoryAccess));
        }
        if let Err(s) = write(c, ptr, data) {
            return Ok(Err(s));
        }
    }
    Ok(write_u32(c, ptr_ptr, ptr).and_then(|()| write_u32(c, size_ptr, data.len() as u32)))
}

fn map_mut(d: &mut WorkerData, map: i32) -> Result<&mut Pairs, Status> {
    if map == abi::MAP_CALL_RESPONSE_HEADERS || map == abi::MAP_CALL_RESPONSE_TRAILERS {
        let (h, _, t) = d.call_response.as_mut().ok_or(Status::NotFound)?;
        return Ok(if map == abi::MAP_CALL_RESPONSE_HEADERS { h } else { t });
    }
    let s = d.stream().ok_or(Status::NotFound)?;
    match map {
        abi::MAP_REQUEST_HEADERS => Ok(&mut s.request_headers),
        abi::MAP_REQUEST_TRAILERS => Ok(&mut s.request_trailers),
        abi::MAP_RESPONSE_HEADERS => Ok(&mut s.response_headers),
        abi::MAP_RESPONSE_TRAILERS => Ok(&mut s.response_trailers),
        _ => Err(Status::BadArgument),
    }
}

fn buffer(d: &mut WorkerData, kind: i32) -> Result<Vec<u8>, Status> {
    match kind {
        abi::BUFFER_PLUGIN_CONFIGURATION => Ok(d.info.plugin_config.clone()),
        abi::BUFFER_VM_CONFIGURATION => Ok(d.info.vm_config.clone()),
        abi::BUFFER_CALL_RESPONSE_BODY => d.call_response.as_ref().map(|r| r.1.clone()).ok_or(Status::NotFound),
        abi::BUFFER_REQUEST_BODY => d.stream().map(|s| s.request_body.clone()).ok_or(Status::NotFound),
        abi::BUFFER_RESPONSE_BODY => d.stream().map(|s| s.response_body.clone()).ok_or(Status::NotFound),
        _ => Err(Status::NotFound),
    }
}

fn header<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a [u8]> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

/// Envoy attributes the harness knows, then filter state (`wasm.<path>`).
fn property(d: &mut WorkerData, path: &[u8]) -> Option<Vec<u8>> {
    let parts: Vec<&[u8]> = path.split(|&b| b == 0).collect();
    let text = |s: &str| Some(s.as_bytes().to_vec());
    let port =
        |addr: &str| addr.rsplit_once(':').and_then(|(_, p)| p.parse::<i64>().ok()).map(|p| p.to_le_bytes().to_vec());
    let info = d.info.clone();
    match parts.as_slice() {
        [b"plugin_name"] => return text(&info.plugin_name),
        [b"plugin_root_id"] => return text(&info.root_id),
        [b"plugin_vm_id"] => return text(&info.vm_id),
        _ => {}
    }
    let key = format!("wasm.{}", String::from_utf8_lossy(path));
    let root_value = d.root_state.get(&key).cloned();
    let Some(s) = d.stream() else { return root_value };
    let h = &s.request_headers;
    let path_h = header(h, ":path").map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
    match parts.as_slice() {
        [b"request", b"path"] => text(&path_h),
        [b"request", b"url_path"] => text(path_h.split('?').next().unwrap_or_default()),
        [b"request", b"query"] => text(path_h.split_once('?').map(|(_, q)| q).unwrap_or_default()),
        [b"request", b"host"] => header(h, ":authority").map(<[u8]>::to_vec),
        [b"request", b"method"] => header(h, ":method").map(<[u8]>::to_vec),
        [b"request", b"scheme"] => header(h, ":scheme").map(<[u8]>::to_vec).or_else(|| text("http")),
        [b"request", b"id"] => header(h, "x-request-id").map(<[u8]>::to_vec),
        [b"request", b"useragent"] => header(h, "user-agent").map(<[u8]>::to_vec),
        [b"request", b"referer"] => header(h, "referer").map(<[u8]>::to_vec),
        [b"request", b"protocol"] => text("HTTP/1.1"),
        [b"source", b"address"] => text(&s.source),
        [b"source", b"port"] => port(&s.source),
        [b"destination", b"address"] => text(&s.destination),
        [b"destination", b"port"] => port(&s.destination),
        [b"response", b"code"] => {
            let status =
                header(&s.response_headers, ":status").and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok());
            status.map(|v| v.to_le_bytes().to_vec())
        }
        _ => s.filter_state.get(&key).cloned().or(root_value),
    }
}

pub fn add_to_linker(linker: &mut Linker<WorkerData>) -> wasmtime::Result<()> {
    linker.func_wrap("env", "proxy_log", |mut c: C<'_>, level: i32, ptr: i32, len: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_log") {
            return Ok(s);
        }
        code(Ok((|| {
            let level = LogLevel::from_abi(level).ok_or(Status::BadArgument)?;
            let msg = String::from_utf8_lossy(&read(&mut c, ptr, len)?).into_owned();
            if level as u32 >= c.data().world.log_level.get() {
                c.data().world.log(c.data().index, level, msg);
            }
            Ok(())
        })()))
    })?;
    linker.func_wrap("env", "proxy_get_log_level", |mut c: C<'_>, ret: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_get_log_level") {
            return Ok(s);
        }
        let level = c.data().world.log_level.get();
        code(Ok(write_u32(&mut c, ret, level)))
    })?;
    linker.func_wrap("env", "proxy_get_current_time_nanoseconds", |mut c: C<'_>, ret: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_get_current_time_nanoseconds") {
            return Ok(s);
        }
        let now = c.data().world.now_ns.get();
        code(Ok(write(&mut c, ret as u32, &now.to_le_bytes())))
    })?;
    linker.func_wrap("env", "proxy_set_tick_period_milliseconds", |mut c: C<'_>, period: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_set_tick_period_milliseconds") {
            return Ok(s);
        }
        let d = c.data_mut();
        d.tick_period_ms = period as u32;
        d.next_tick_ns = d.world.now_ns.get().saturating_add(u64::from(period as u32) * 1_000_000);
        code(Ok(Ok(())))
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, kind: i32, start: i32, max: i32, ptr_ptr: i32, size_ptr: i32| {
            if let Some(Fault::Status(s)) = injected(&c, "proxy_get_buffer_bytes") {
                return Ok(s);
            }
            let data = match buffer(c.data_mut(), kind) {
                Ok(d) => d,
                Err(s) => return Ok(s as i32),
            };
            let start = (start as u32 as usize).min(data.len());
            let end = start.saturating_add(max as u32 as usize).min(data.len());
            let slice = data.get(start..end).unwrap_or_default().to_vec();
            code(return_bytes(&mut c, &slice, ptr_ptr, size_ptr))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| {
            code(Ok((|| {
                let data = read(&mut c, ptr, len)?;
                let s = c.data_mut().stream().ok_or(Status::NotFound)?;
                let buf = match kind {
                    abi::BUFFER_REQUEST_BODY => &mut s.request_body,
                    abi::BUFFER_RESPONSE_BODY => &mut s.response_body,
                    _ => return Err(Status::BadArgument),
                };
                let start = (start as u32 as usize).min(buf.len());
                let end = start.saturating_add(size as u32 as usize).min(buf.len());
                buf.splice(start..end, data);
                Ok(())
            })()))
        },
    )?;
    linker.func_wrap("env", "proxy_get_header_map_pairs", |mut c: C<'_>, map: i32, ptr_ptr: i32, size_ptr: i32| {
        match injected(&c, "proxy_get_header_map_pairs") {
            Some(Fault::Status(s)) => return Ok(s),
            Some(Fault::Garbage) => return code(return_bytes(&mut c, b"\x05\0\0\0garbage", ptr_ptr, size_ptr)),
            None => {}
        }
        let bytes = match map_mut(c.data_mut(), map) {
            Ok(m) => abi::serialize_pairs(m),
            Err(s) => return Ok(s as i32),
        };
        code(return_bytes(&mut c, &bytes, ptr_ptr, size_ptr))
    })?;
    linker.func_wrap("env", "proxy_set_header_map_pairs", |mut c: C<'_>, map: i32, ptr: i32, len: i32| {
        code(Ok((|| {
            let pairs = abi::deserialize_pairs(&read(&mut c, ptr, len)?).ok_or(Status::ParseFailure)?;
            *map_mut(c.data_mut(), map)? = lower(pairs);
            Ok(())
        })()))
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, map: i32, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32| {
            if let Some(Fault::Status(s)) = injected(&c, "proxy_get_header_map_value") {
                return Ok(s);
            }
            let key = match read_str(&mut c, kp, kl) {
                Ok(k) => k,
                Err(s) => return Ok(s as i32),
            };
            let value = match map_mut(c.data_mut(), map) {
                // Envoy joins repeated headers with ',' when asked for one value.
                Ok(m) => {
                    let values: Vec<&[u8]> =
                        m.iter().filter(|(k, _)| k.eq_ignore_ascii_case(&key)).map(|(_, v)| v.as_slice()).collect();
                    if values.is_empty() {
                        return Ok(Status::NotFound as i32);
                    }
                    values.join(&b","[..])
                }
                Err(s) => return Ok(s as i32),
            };
            code(return_bytes(&mut c, &value, ptr_ptr, size_ptr))
        },
    )?;
    linker.func_wrap("env", "proxy_remove_header_map_value", |mut c: C<'_>, map: i32, kp: i32, kl: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_remove_header_map_value") {
            return Ok(s);
        }
        code(Ok((|| {
            let key = read_str(&mut c, kp, kl)?;
            map_mut(c.data_mut(), map)?.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            Ok(())
        })()))
    })?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            if let Some(Fault::Status(s)) = injected(&c, "proxy_replace_header_map_value") {
                return Ok(s);
            }
            code(Ok((|| {
                let key = read_str(&mut c, kp, kl)?.to_ascii_lowercase();
                let value = read(&mut c, vp, vl)?;
                let m = map_mut(c.data_mut(), map)?;
                m.retain(|(k, _)| *k != key);
                m.push((key, value));
                Ok(())
            })()))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| {
            code(Ok((|| {
                let key = read_str(&mut c, kp, kl)?.to_ascii_lowercase();
                let value = read(&mut c, vp, vl)?;
                map_mut(c.data_mut(), map)?.push((key, value));
                Ok(())
            })()))
        },
    )?;
    linker.func_wrap("env", "proxy_get_property", |mut c: C<'_>, pp: i32, pl: i32, ptr_ptr: i32, size_ptr: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_get_property") {
            return Ok(s);
        }
        let path = match read(&mut c, pp, pl) {
            Ok(p) => p,
            Err(s) => return Ok(s as i32),
        };
        match property(c.data_mut(), &path) {
            Some(v) => code(return_bytes(&mut c, &v, ptr_ptr, size_ptr)),
            None => Ok(Status::NotFound as i32),
        }
    })?;
    linker.func_wrap("env", "proxy_set_property", |mut c: C<'_>, pp: i32, pl: i32, vp: i32, vl: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_set_property") {
            return Ok(s);
        }
        code(Ok((|| {
            let key = format!("wasm.{}", String::from_utf8_lossy(&read(&mut c, pp, pl)?));
            let value = read(&mut c, vp, vl)?;
            let d = c.data_mut();
            match d.stream() {
                Some(s) => s.filter_state.insert(key, value),
                None => d.root_state.insert(key, value),
            };
            Ok(())
        })()))
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, ptr_ptr: i32, size_ptr: i32, cas_ptr: i32| {
            if let Some(Fault::Status(s)) = injected(&c, "proxy_get_shared_data") {
                return Ok(s);
            }
            let key = match read_str(&mut c, kp, kl) {
                Ok(k) => k,
                Err(s) => return Ok(s as i32),
            };
            let (world, worker, vm_id) = (c.data().world.clone(), c.data().index, c.data().info.vm_id.clone());
            world.fire_hooks(worker, HookPoint::BeforeSharedDataGet);
            match world.get_shared_data(&vm_id, &key) {
                None => Ok(Status::NotFound as i32),
                Some((value, cas)) => {
                    if let Err(s) = write_u32(&mut c, cas_ptr, cas) {
                        return Ok(s as i32);
                    }
                    code(return_bytes(&mut c, &value, ptr_ptr, size_ptr))
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| {
            if let Some(Fault::Status(s)) = injected(&c, "proxy_set_shared_data") {
                return Ok(s);
            }
            let (key, value) = match (read_str(&mut c, kp, kl), read(&mut c, vp, vl)) {
                (Ok(k), Ok(v)) => (k, v),
                (Err(s), _) | (_, Err(s)) => return Ok(s as i32),
            };
            let (world, worker, vm_id) = (c.data().world.clone(), c.data().index, c.data().info.vm_id.clone());
            world.fire_hooks(worker, HookPoint::BeforeSharedDataSet);
            Ok(world.set_shared_data(&vm_id, &key, value, cas as u32) as i32)
        },
    )?;
    linker.func_wrap("env", "proxy_register_shared_queue", |mut c: C<'_>, np: i32, nl: i32, ret: i32| {
        code(Ok((|| {
            let name = read_str(&mut c, np, nl)?;
            let d = c.data();
            let token = d.world.register_queue(&d.info.vm_id, &name, d.index, d.effective);
            write_u32(&mut c, ret, token)
        })()))
    })?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| {
            code(Ok((|| {
                let vm_id = read_str(&mut c, vp, vl)?;
                let name = read_str(&mut c, np, nl)?;
                let token = c.data().world.resolve_queue(&vm_id, &name).ok_or(Status::NotFound)?;
                write_u32(&mut c, ret, token)
            })()))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, token: i32, ptr_ptr: i32, size_ptr: i32| match c.data().world.dequeue(token as u32) {
            Ok(v) => code(return_bytes(&mut c, &v, ptr_ptr, size_ptr)),
            Err(s) => Ok(s as i32),
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, token: i32, ptr: i32, len: i32| match read(&mut c, ptr, len) {
            Ok(v) => Ok(c.data().world.enqueue(token as u32, v) as i32),
            Err(s) => Ok(s as i32),
        },
    )?;
    linker.func_wrap("env", "proxy_continue_stream", |mut c: C<'_>, stream: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_continue_stream") {
            return Ok(s);
        }
        let ok = match (c.data_mut().stream(), stream) {
            (Some(s), abi::STREAM_REQUEST | abi::STREAM_RESPONSE) => {
                s.resumed = true;
                Ok(())
            }
            (None, _) => Err(Status::NotFound),
            _ => Err(Status::BadArgument),
        };
        code(Ok(ok))
    })?;
    linker.func_wrap("env", "proxy_close_stream", |mut c: C<'_>, _stream: i32| {
        code(Ok(c.data_mut().stream().map(|s| s.closed = true).ok_or(Status::NotFound)))
    })?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>, status: i32, dp: i32, dl: i32, bp: i32, bl: i32, hp: i32, hl: i32, _grpc: i32| {
            if let Some(Fault::Status(s)) = injected(&c, "proxy_send_local_response") {
                return Ok(s);
            }
            code(Ok((|| {
                let details = String::from_utf8_lossy(&read(&mut c, dp, dl)?).into_owned();
                let body = read(&mut c, bp, bl)?;
                let headers = abi::deserialize_pairs(&read(&mut c, hp, hl)?).ok_or(Status::ParseFailure)?;
                let s = c.data_mut().stream().ok_or(Status::NotFound)?;
                s.local_response =
                    Some(LocalResponse { status: status as u32, details, headers: lower(headers), body });
                Ok(())
            })()))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         ret: i32| {
            if let Some(Fault::Status(s)) = injected(&c, "proxy_http_call") {
                return Ok(s);
            }
            code(Ok((|| {
                let upstream = read_str(&mut c, up, ul)?;
                let headers = abi::deserialize_pairs(&read(&mut c, hp, hl)?).ok_or(Status::ParseFailure)?;
                let body = read(&mut c, bp, bl)?;
                let _trailers = read(&mut c, tp, tl)?;
                let d = c.data_mut();
                // Envoy refuses a call to a cluster it does not know, and one without :path etc.
                if !d.world.upstreams.borrow().contains_key(&upstream) {
                    return Err(Status::BadArgument);
                }
                if [":method", ":path", ":authority"].iter().any(|h| header(&headers, h).is_none()) {
                    return Err(Status::BadArgument);
                }
                let mut calls = d.world.calls.borrow_mut();
                let token = calls.len() as u32 + 1;
                calls.push(CallRecord {
                    worker: d.index,
                    context_id: d.effective,
                    token,
                    upstream,
                    headers,
                    body,
                    timeout_ms: timeout as u32,
                });
                drop(calls);
                d.pending_calls.insert(token, d.effective);
                write_u32(&mut c, ret, token)
            })()))
        },
    )?;
    linker.func_wrap("env", "proxy_set_effective_context", |mut c: C<'_>, ctx: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_set_effective_context") {
            return Ok(s);
        }
        let d = c.data_mut();
        let ctx = ctx as u32;
        code(Ok(if ctx == d.root_id || d.streams.contains_key(&ctx) {
            d.effective = ctx;
            Ok(())
        } else {
            Err(Status::BadArgument)
        }))
    })?;
    linker.func_wrap("env", "proxy_done", |_c: C<'_>| Ok(Status::Ok as i32))?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: i32, nl: i32, ap: i32, al: i32, ptr_ptr: i32, size_ptr: i32| {
            if let Some(Fault::Status(s)) = injected(&c, "proxy_call_foreign_function") {
                return Ok(s);
            }
            let (name, args) = match (read_str(&mut c, np, nl), read(&mut c, ap, al)) {
                (Ok(n), Ok(a)) => (n, a),
                (Err(s), _) | (_, Err(s)) => return Ok(s as i32),
            };
            match foreign::call(&name, &args) {
                Ok(out) => code(return_bytes(&mut c, &out, ptr_ptr, size_ptr)),
                Err(s) => Ok(s as i32),
            }
        },
    )?;
    linker.func_wrap("env", "proxy_define_metric", |mut c: C<'_>, kind: i32, np: i32, nl: i32, ret: i32| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_define_metric") {
            return Ok(s);
        }
        code(Ok((|| {
            let kind = MetricKind::from_abi(kind).ok_or(Status::BadArgument)?;
            let name = read_str(&mut c, np, nl)?;
            let id = c.data().world.define_metric(kind, &name);
            write_u32(&mut c, ret, id)
        })()))
    })?;
    linker.func_wrap("env", "proxy_increment_metric", |c: C<'_>, id: i32, offset: i64| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_increment_metric") {
            return Ok(s);
        }
        let r = c.data().world.with_metric(id as u32, |m| match m.kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => {
                m.value = m.value.saturating_add(offset);
                Ok(())
            }
        });
        code(Ok(r.unwrap_or(Err(Status::NotFound))))
    })?;
    linker.func_wrap("env", "proxy_record_metric", |c: C<'_>, id: i32, value: i64| {
        if let Some(Fault::Status(s)) = injected(&c, "proxy_record_metric") {
            return Ok(s);
        }
        let r = c.data().world.with_metric(id as u32, |m| {
            match m.kind {
                MetricKind::Histogram => m.samples.push(value as u64),
                _ => m.value = value,
            }
            Ok(())
        });
        code(Ok(r.unwrap_or(Err(Status::NotFound))))
    })?;
    linker.func_wrap("env", "proxy_get_metric", |mut c: C<'_>, id: i32, ret: i32| {
        let v = c.data().world.with_metric(id as u32, |m| match m.kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => Ok(m.value),
        });
        match v.unwrap_or(Err(Status::NotFound)) {
            Ok(v) => code(Ok(write(&mut c, ret as u32, &v.to_le_bytes()))),
            Err(s) => Ok(s as i32),
        }
    })?;
    linker.func_wrap("env", "proxy_get_status", |mut c: C<'_>, code_ptr: i32, ptr_ptr: i32, size_ptr: i32| {
        if let Err(s) = write_u32(&mut c, code_ptr, 0) {
            return Ok(s as i32);
        }
        code(return_bytes(&mut c, b"", ptr_ptr, size_ptr))
    })?;
    // gRPC is outside what jitgate needs: answered, explicitly, as unimplemented.
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            Ok(Status::Unimplemented as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |_: C<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            Ok(Status::Unimplemented as i32)
        },
    )?;
    linker.func_wrap("env", "proxy_grpc_send", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| {
        Ok(Status::Unimplemented as i32)
    })?;
    linker.func_wrap("env", "proxy_grpc_cancel", |_: C<'_>, _: i32| Ok(Status::Unimplemented as i32))?;
    linker.func_wrap("env", "proxy_grpc_close", |_: C<'_>, _: i32| Ok(Status::Unimplemented as i32))?;
    Ok(())
}

/// Header names are lower-case inside Envoy.
fn lower(pairs: Pairs) -> Pairs {
    pairs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()
}
