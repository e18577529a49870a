//! A chat room per name, kept by a Durable Object: connect a WebSocket to `/room/<name>`
//! through any node, and every message sent by anyone in the room reaches everyone in it
//! (the sender too), in one order. The room keeps its history: `GET /room/<name>/history`
//! lists the messages, one per line.
//!
//! The room accepts its sockets as hibernatable: when nobody speaks for a while the object is
//! evicted, the clients stay connected, and the next message wakes it.

use nimbus::durable::{ListOptions, Message, Namespace, WebSocket};
use nimbus::{DurableObject, Request, Response, State};

struct Worker;

impl nimbus::Handler for Worker {
    fn fetch(req: Request) -> nimbus::Result<Response> {
        let path = req.path.split('?').next().unwrap_or("/").to_string();
        let Some(rest) = path.strip_prefix("/room/") else {
            return Ok(Response::new(404, "connect a WebSocket to /room/<name>\n"));
        };
        let (room, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if room.is_empty() {
            return Ok(Response::new(400, "a room needs a name\n"));
        }
        let stub = Namespace::new("ROOMS").get_by_name(room).map_err(|e| format!("{e:?}"))?;
        let forwarded = Request { path: format!("/{tail}"), ..req };
        stub.fetch(&forwarded).map_err(|e| format!("{e:?}").into())
    }
}

nimbus::export!(Worker);

struct Room {
    state: State,
}

impl Room {
    fn broadcast(&self, text: &str) -> nimbus::Result<()> {
        let seq = self.state.storage.get_u64("seq")?.unwrap_or(0) + 1;
        self.state.storage.put_many(vec![
            ("seq".to_string(), seq.to_string().into_bytes()),
            (format!("msg:{seq:012}"), text.as_bytes().to_vec()),
        ])?;
        for socket in self.state.websockets(None)? {
            // A socket closing right now is told by its own close event.
            let _ = socket.send_text(text);
        }
        Ok(())
    }
}

impl DurableObject for Room {
    fn new(state: State) -> Self {
        Room { state }
    }

    fn fetch(&mut self, req: Request) -> nimbus::Result<Response> {
        if req.is_websocket_upgrade() {
            self.state.accept_websocket(&["member"])?;
            return Ok(Response::switching_protocols());
        }
        match req.path.as_str() {
            "/history" => {
                let options = ListOptions { prefix: Some("msg:".into()), ..Default::default() };
                let lines: Vec<String> = self
                    .state
                    .storage
                    .list(&options)?
                    .into_iter()
                    .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
                    .collect();
                Ok(Response::text(lines.iter().map(|l| format!("{l}\n")).collect::<String>()))
            }
            "/members" => Ok(Response::text(format!("{}\n", self.state.websockets(Some("member"))?.len()))),
            _ => Ok(Response::new(426, "this room speaks WebSocket\n")),
        }
    }

    fn websocket_message(&mut self, _socket: WebSocket, message: Message) -> nimbus::Result<()> {
        match message {
            Message::Text(text) => self.broadcast(&text),
            Message::Binary(_) => Ok(()),
        }
    }
}

nimbus::durable_objects!(Room);
