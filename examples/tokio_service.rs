//! A tokio server answering requests that arrive over shmkit channels from several client
//! processes, with a timeout per request: async receiving from shared memory, no thread per
//! client.
//!
//! Each client has a request ring (client → server) and a reply ring (server → client).
//! The server awaits all request rings at once (one tokio task per client, all on one
//! thread), answers each request (awaiting room in the reply ring), gives up on a request
//! that takes too long, and awaits the client processes' ends.
//!
//! ```sh
//! cargo run --release --example tokio_service --features tokio
//! ```

use std::time::Duration;

use shmkit::aio::Async;
use shmkit::process::Process;
use shmkit::{spsc, Error};

const CLIENTS: u32 = 3;
const REQUESTS: u64 = 1000;

shmkit::task! {
    /// A client: sends `REQUESTS` numbers and checks each answer (the square).
    fn client(req: String, rep: String) -> Result<u64, String> {
        let mut tx = spsc::Sender::<u64>::open(&req).map_err(|e| e.to_string())?;
        let mut rx = spsc::Receiver::<u64>::open(&rep).map_err(|e| e.to_string())?;
        for i in 0..REQUESTS {
            tx.send(i).map_err(|e| e.to_string())?;
            let answer = rx.recv().map_err(|e| e.to_string())?;
            if answer != i * i {
                return Err(format!("{i}: got {answer}"));
            }
        }
        Ok(REQUESTS)
    }
}

/// Serves one client until it goes; how many requests it answered.
async fn serve(
    mut requests: Async<spsc::Receiver<u64>>,
    mut replies: Async<spsc::Sender<u64>>,
) -> u64 {
    let mut served = 0;
    loop {
        // A request that does not come within the timeout ends this client's session.
        match tokio::time::timeout(Duration::from_secs(5), requests.recv()).await {
            Ok(Ok(x)) => match replies.send(x * x).await {
                Ok(()) => served += 1,
                Err(e) => {
                    eprintln!("a client's reply ring: {e}: closing its session");
                    return served;
                }
            },
            Ok(Err(Error::Disconnected)) => return served,
            Ok(Err(e)) => panic!("request ring: {e}"),
            Err(_) => {
                eprintln!("a client sent nothing for 5 s: closing its session");
                return served;
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut sessions = Vec::new();
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let req = format!("example.svc.{}.{c}.req", std::process::id());
            let rep = format!("example.svc.{}.{c}.rep", std::process::id());
            let requests = Async::new(spsc::Receiver::<u64>::create(&req, 64)?)?;
            let replies = Async::new(spsc::Sender::<u64>::create(&rep, 64)?)?;
            sessions.push(tokio::spawn(serve(requests, replies)));
            clients.push(Process::spawn(client, (req, rep))?);
        }
        let mut total = 0;
        for s in sessions {
            total += s.await?;
        }
        for c in clients {
            c.join_async().await??;
        }
        println!("served {total} requests from {CLIENTS} client processes on one thread");
        Ok(())
    })
}
