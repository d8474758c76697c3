// assay serve CKPT: an OpenAI-compatible completions server over a native
// checkpoint (the coordinator's HTTP transport, the evals' CompletionServer:
// inference on a thread of its own, concurrent requests batched).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "assay/coordinator.h"
#include "assay/engine.h"
#include "assay/evals_native.h"
#include "assay/evals_serve.h"
#include "registry.h"

namespace {

namespace ev = assay::evals;
namespace co = assay::coordinator;

struct ServeOpts {
  std::string checkpoint, host = "127.0.0.1", model_name, port_file;
  int port = 8000, threads = 0, batch_size = 16, gen_batch_size = 16, max_queued = 256;
  std::string device = "auto";
};

int run(const ServeOpts& o) {
  if (o.port < 0 || o.port > 65535) {
    std::cerr << "assay serve: --port must be 0..65535, got " << o.port << "\n";
    return 2;
  }
  if (o.threads > 0) assay::engine::set_num_threads(o.threads);
  ev::NativeOptions no;
  no.batch_size = o.batch_size;
  no.gen_batch_size = o.gen_batch_size;
  no.device = o.device;
  if (o.batch_size < 1 || o.gen_batch_size < 1 || o.max_queued < 1) {
    std::cerr << "assay serve: --batch-size, --gen-batch-size and --max-queued must be >= 1\n";
    return 2;
  }
  auto backend = ev::load_native_backend(o.checkpoint, no);
  if (!backend.ok()) {
    std::cerr << "assay serve: " << backend.status().message() << "\n";
    return 1;
  }
  ev::NativeBackend& be = **backend;
  const std::string name = o.model_name.empty() ? be.name() : o.model_name;
  co::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.server_name = "assay-serve";
  so.read_timeout_s = 600;
  so.on_listening = [&](int port) {
    std::printf("assay serve: %s (checkpoint %s) as model \"%s\" on http://%s:%d/v1\n",
                o.checkpoint.c_str(), be.checkpoint_hash().substr(0, 12).c_str(), name.c_str(),
                o.host.c_str(), port);
    std::fflush(stdout);
    if (!o.port_file.empty()) {
      std::ofstream f(o.port_file, std::ios::trunc);
      f << port << "\n";
    }
  };
  ev::CompletionServerOptions cso;
  cso.max_queued = static_cast<size_t>(o.max_queued);
  cso.max_batch_choices = static_cast<size_t>(std::max(o.gen_batch_size, 1)) * 4;
  ev::CompletionServer server(be, name, cso);
  // Runs on the HTTP thread; completions are answered later from the
  // inference thread, everything else at once.
  auto handler = [&](const co::Request& req, co::HttpRespond reply) {
    server.handle(req.method, req.target, req.body, [reply = std::move(reply)](ev::ApiReply r) {
      co::Response resp;
      resp.status = r.status;
      resp.body = std::move(r.body);
      reply(std::move(resp));
    });
  };
  assay::Status st = co::serve_http_async(handler, so, 64u << 20);
  if (!st.ok()) {
    std::cerr << "assay serve: " << st.message() << "\n";
    return 1;
  }
  return 0;
}

void add_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOpts>();
  auto* c = app.add_subcommand("serve", "Serve a native checkpoint as an OpenAI-compatible /v1/completions API");
  c->add_option("checkpoint", o->checkpoint, "Checkpoint directory (model.safetensors, config.json, tokenizer)")
      ->required();
  c->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  c->add_option("--port", o->port, "Port to listen on (0 = any free port, printed at start)")->capture_default_str();
  c->add_option("--port-file", o->port_file, "Write the bound port to this file once listening");
  c->add_option("--model-name", o->model_name, "Model name clients must send (default: the checkpoint path)");
  c->add_option("--threads", o->threads, "CPU threads of the engine (0 = default)")->capture_default_str();
  c->add_option("--batch-size", o->batch_size, "Prompts per scoring forward")->capture_default_str();
  c->add_option("--gen-batch-size", o->gen_batch_size, "Sequences decoded together")->capture_default_str();
  c->add_option("--max-queued", o->max_queued, "Completions that may wait; more get a 503")
      ->capture_default_str();
  c->add_option("--device", o->device, "auto (a GPU when built with CUDA and one is visible), cpu, cuda or cuda:N")
      ->capture_default_str();
  c->footer(
      "\nEndpoints: GET /v1/models; POST /v1/completions with prompt (text, token ids, or a list\n"
      "of either), max_tokens (default 16), temperature, top_p, top_k, seed, n, stop, echo and\n"
      "logprobs (OpenAI meanings; a fixed seed reproduces the output); vLLM's POST /tokenize,\n"
      "POST /detokenize and GET /tokenizer_info (lm-eval's tokenizer_backend=remote); GET /health.\n"
      "Inference runs on its own thread: requests that arrive while it is busy are batched\n"
      "together. Stop with Ctrl-C or SIGTERM.\n\n"
      "Example:\n"
      "  assay serve runs/sft/final --port 8000 --model-name sft\n"
      "  assay eval gsm8k --endpoint http://127.0.0.1:8000/v1 --model sft --limit 20");
  c->callback([o] { assay::cli::set_exit_code(run(*o)); });
}

}  // namespace

ASSAY_REGISTER_COMMAND(61, add_serve);
