// trainer.cpp: the training loop, validation, checkpoints and resume. See trainer.h.
#include "apps/screening/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "apps/screening/metrics.h"
#include "apps/screening/progress.h"
#include "autograd/ops.h"
#include "data/loader.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/safetensors.h"
#include "optim/adam.h"
#include "optim/checkpoint.h"
#include "optim/lr_scheduler.h"

namespace sleepnet::screening {

namespace fs = std::filesystem;
using nlohmann::json;

json TrainOptions::to_json() const {
  return json{{"epochs", epochs},       {"batch_size", batch_size},       {"lr", lr},
              {"weight_decay", weight_decay}, {"warmup_epochs", warmup_epochs}, {"min_lr_factor", min_lr_factor},
              {"patience", patience},   {"width_mult", width_mult},       {"dropout", dropout},
              {"time_shift", time_shift}, {"mixup", mixup}, {"seed", seed}};
}

TrainOptions TrainOptions::from_json(const json& j) {
  TrainOptions o;
  o.epochs = j.at("epochs").get<int>();
  o.batch_size = j.at("batch_size").get<int64_t>();
  o.lr = j.at("lr").get<double>();
  o.weight_decay = j.at("weight_decay").get<double>();
  o.warmup_epochs = j.at("warmup_epochs").get<double>();
  o.min_lr_factor = j.at("min_lr_factor").get<double>();
  o.patience = j.at("patience").get<int>();
  o.width_mult = j.at("width_mult").get<double>();
  o.dropout = j.at("dropout").get<float>();
  o.seed = j.at("seed").get<uint64_t>();
  o.time_shift = j.value("time_shift", 0);  // runs made before augmentation existed had none
  o.mixup = j.value("mixup", 0.0);
  return o;
}

void TrainOptions::validate() const {
  auto bad = [](const char* field, const std::string& what) {
    throw Error(fmt::format("training option '{}': {}", field, what));
  };
  if (epochs < 1 || epochs > 10000) bad("epochs", fmt::format("{} is not in 1..10000", epochs));
  if (batch_size < 1 || batch_size > 65536) bad("batch_size", fmt::format("{} is not in 1..65536", batch_size));
  if (!(lr > 0 && lr < 10)) bad("lr", fmt::format("{} is not in (0, 10)", lr));
  if (!(weight_decay >= 0 && weight_decay < 1)) bad("weight_decay", fmt::format("{} is not in [0, 1)", weight_decay));
  if (!(warmup_epochs >= 0)) bad("warmup_epochs", "must be >= 0");
  if (!(min_lr_factor >= 0 && min_lr_factor <= 1)) bad("min_lr_factor", "must be in [0, 1]");
  if (patience < 0) bad("patience", "must be >= 0");
  if (!(width_mult > 0 && width_mult <= 4)) bad("width_mult", fmt::format("{} is not in (0, 4]", width_mult));
  if (!(dropout >= 0 && dropout < 1)) bad("dropout", fmt::format("{} is not in [0, 1)", dropout));
  if (time_shift < 0 || time_shift > 1000) bad("time_shift", fmt::format("{} is not in 0..1000", time_shift));
  if (!(mixup >= 0 && mixup <= 100)) bad("mixup", fmt::format("{} is not in [0, 100]", mixup));
}

nn::MobileNetV2Options model_options(const TrainOptions& opt, int in_channels) {
  nn::MobileNetV2Options m;
  m.width_mult = opt.width_mult;
  m.in_channels = in_channels;
  m.num_outputs = 1;
  m.dropout = opt.dropout;
  m.seed = opt.seed;
  return m;
}

namespace {

// Dropout masks of epoch e come from a generator seeded with (seed, e), so a resumed run draws the
// same masks as an uninterrupted one.
void seed_dropout(nn::Module& model, uint64_t seed, int epoch) {
  int k = 0;
  for (auto& [name, m] : model.named_modules())
    if (auto* d = dynamic_cast<nn::Dropout*>(m))
      d->generator.manual_seed(seed * 1000003ULL + static_cast<uint64_t>(epoch) * 7919ULL + k++);
}

// Gamma(a, 1) by Marsaglia and Tsang (2000), from the project's generator (no std:: distributions,
// so a resumed run draws the same numbers). a < 1 uses Gamma(a + 1) * U^(1/a).
double sample_gamma(Generator& g, double a) {
  if (a < 1) return sample_gamma(g, a + 1) * std::pow(1.0 - g.uniform_double(), 1.0 / a);
  const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = g.normal();
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = 1.0 - g.uniform_double();
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

}  // namespace

void augment_batch(data::Batch& b, const TrainOptions& o, int epoch) {
  if (o.time_shift == 0 && o.mixup == 0) return;
  Generator g(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) * 1000003ULL +
              static_cast<uint64_t>(b.index) + 17);
  const Shape& sh = b.images.shape();
  const int64_t N = sh[0], C = sh[1], H = sh[2], W = sh[3];
  float* x = b.images.data();
  if (o.time_shift > 0) {
    std::vector<float> row(static_cast<size_t>(W));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t s = static_cast<int64_t>(g.next_u64() % static_cast<uint64_t>(2 * o.time_shift + 1)) - o.time_shift;
      if (s == 0) continue;
      for (int64_t r = 0; r < C * H; ++r) {
        float* line = x + (n * C * H + r) * W;
        for (int64_t w = 0; w < W; ++w) row[static_cast<size_t>(w)] = line[std::clamp<int64_t>(w - s, 0, W - 1)];
        std::copy(row.begin(), row.end(), line);
      }
    }
  }
  if (o.mixup > 0 && N > 1) {
    const double ga = sample_gamma(g, o.mixup), gb = sample_gamma(g, o.mixup);
    const float lam = static_cast<float>(ga / (ga + gb));
    std::vector<int64_t> perm(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) perm[static_cast<size_t>(i)] = i;
    shuffle(perm, g);
    const int64_t per = C * H * W;
    std::vector<float> mixed(static_cast<size_t>(N * per));
    float* y = b.labels.data();
    std::vector<float> labels(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t m = perm[static_cast<size_t>(n)];
      for (int64_t i = 0; i < per; ++i)
        mixed[static_cast<size_t>(n * per + i)] = lam * x[n * per + i] + (1 - lam) * x[m * per + i];
      labels[static_cast<size_t>(n)] = lam * y[n] + (1 - lam) * y[m];
    }
    std::copy(mixed.begin(), mixed.end(), x);
    std::copy(labels.begin(), labels.end(), y);
  }
}

namespace {

struct Validation {
  double loss = NAN, accuracy = NAN, auc = NAN, score = NAN;
};

Validation validate(nn::MobileNetV2& model, const data::Dataset& ds, const std::vector<int64_t>& val) {
  Validation v;
  if (val.empty()) return v;
  std::vector<double> p = predict_probabilities(model, ds, val);
  std::vector<int> truth(val.size());
  double se = 0;
  int64_t correct = 0;
  for (size_t i = 0; i < val.size(); ++i) {
    truth[i] = ds.sample(val[i]).label > 0.5f ? 1 : 0;
    se += (p[i] - truth[i]) * (p[i] - truth[i]);
    correct += (p[i] >= 0.5) == (truth[i] == 1);
  }
  v.loss = se / val.size();
  v.accuracy = static_cast<double>(correct) / val.size();
  v.auc = roc_auc(p, truth);
  v.score = std::isfinite(v.auc) ? v.auc : -v.loss;
  return v;
}

json log_to_json(const TrainingLog& log) {
  json a = json::array();
  for (const EpochLog& e : log.epochs)
    a.push_back({{"epoch", e.epoch},
                 {"train_loss", e.train_loss},
                 {"val_loss", std::isfinite(e.val_loss) ? json(e.val_loss) : json()},
                 {"val_accuracy", std::isfinite(e.val_accuracy) ? json(e.val_accuracy) : json()},
                 {"val_auc", std::isfinite(e.val_auc) ? json(e.val_auc) : json()},
                 {"learning_rate", e.learning_rate},
                 {"seconds", e.seconds}});
  return a;
}

std::vector<EpochLog> log_from_json(const json& a) {
  std::vector<EpochLog> out;
  auto num = [](const json& v) { return v.is_null() ? NAN : v.get<double>(); };
  for (const json& e : a) {
    EpochLog l;
    l.epoch = e.at("epoch").get<int>();
    l.train_loss = num(e.at("train_loss"));
    l.val_loss = num(e.at("val_loss"));
    l.val_accuracy = num(e.at("val_accuracy"));
    l.val_auc = num(e.at("val_auc"));
    l.learning_rate = num(e.at("learning_rate"));
    l.seconds = num(e.at("seconds"));
    out.push_back(l);
  }
  return out;
}

}  // namespace

std::vector<double> predict_probabilities(nn::MobileNetV2& model, const data::Dataset& ds,
                                          const std::vector<int64_t>& samples, int64_t batch_size) {
  std::vector<double> out;
  out.reserve(samples.size());
  if (samples.empty()) return out;
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  data::DataLoader loader(ds, samples, {.batch_size = batch_size, .shuffle = false, .prefetch = 1});
  auto it = loader.epoch(0);
  data::Batch b;
  while (it.next(b)) {
    Tensor p = sigmoid(model(b.images));
    const float* pp = p.data();
    for (int64_t i = 0; i < b.size(); ++i) out.push_back(pp[i]);
  }
  model.train(was_training);
  return out;
}

TrainSummary train_model(nn::MobileNetV2& model, const data::Dataset& ds, const std::vector<int64_t>& train,
                         const std::vector<int64_t>& val, const TrainOptions& o, const std::string& work_dir,
                         const std::string& name, bool resume, const TrainHooks& hooks) {
  o.validate();
  if (train.empty()) throw Error(fmt::format("train '{}': no training samples", name));
  const fs::path dir(work_dir);
  const fs::path ckpt = dir / "checkpoint.safetensors", best = dir / "best.safetensors", log_csv = dir / "log.csv";

  data::DataLoader loader(ds, train, {.batch_size = o.batch_size, .shuffle = true, .drop_last = train.size() > size_t(o.batch_size), .seed = o.seed, .prefetch = 2});
  const int64_t batches = loader.num_batches();
  optim::AdamW opt(model.named_parameters(), {.lr = o.lr, .weight_decay = o.weight_decay});
  optim::WarmupCosineLR sched(opt, {.warmup_steps = static_cast<int64_t>(o.warmup_epochs * batches),
                                    .total_steps = std::max<int64_t>(o.epochs * batches, static_cast<int64_t>(o.warmup_epochs * batches) + 1),
                                    .warmup_start_factor = 0.01,
                                    .min_lr = o.lr * o.min_lr_factor});

  TrainSummary s;
  s.log.name = name;
  s.best_score = -INFINITY;
  int start_epoch = 1, bad_epochs = 0;
  bool finished = false;
  if (resume && fs::exists(ckpt)) {
    auto loaded = optim::load_checkpoint(ckpt.string(), opt, &sched);
    model.load_state_dict(loaded.model);
    const auto& m = loaded.metadata;
    auto get = [&](const char* key) {
      auto it = m.find(key);
      if (it == m.end()) throw Error(fmt::format("{}: checkpoint metadata has no '{}'", ckpt.string(), key));
      return it->second;
    };
    try {
      if (TrainOptions::from_json(json::parse(get("train_options"))).to_json() != o.to_json())
        throw Error(fmt::format("{}: the checkpoint was made with other training options ({}); resume with the "
                                "same options or start a new run",
                                ckpt.string(), get("train_options")));
      start_epoch = std::stoi(get("epoch")) + 1;
      s.best_epoch = std::stoi(get("best_epoch"));
      s.best_score = std::stod(get("best_score"));
      bad_epochs = std::stoi(get("bad_epochs"));
      finished = get("finished") == "1";
      s.log.epochs = log_from_json(json::parse(get("log")));
    } catch (const json::exception& e) {
      throw Error(fmt::format("{}: corrupt checkpoint metadata: {}", ckpt.string(), e.what()));
    } catch (const std::logic_error& e) {
      throw Error(fmt::format("{}: corrupt checkpoint metadata: {}", ckpt.string(), e.what()));
    }
    s.resumed = true;
    if (o.progress) fmt::print(stderr, "{}: resuming after epoch {}\n", name, start_epoch - 1);
  }

  for (int epoch = start_epoch; epoch <= o.epochs && !finished; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    model.train();
    seed_dropout(model, o.seed, epoch);
    ProgressBar bar(fmt::format("{} epoch {}/{}", name, epoch, o.epochs), loader.num_samples() - (loader.options().drop_last ? loader.num_samples() % o.batch_size : 0));
    auto it = loader.epoch(epoch);
    data::Batch b;
    double loss_sum = 0;
    int64_t seen = 0;
    while (it.next(b)) {
      if (hooks.should_stop && hooks.should_stop(epoch, b.index))
        throw Interrupted(fmt::format("{}: interrupted in epoch {}; the checkpoint of epoch {} in {} is intact: "
                                      "resume with --resume",
                                      name, epoch, epoch - 1, work_dir));
      augment_batch(b, o, epoch);
      Tensor p = sigmoid(model(b.images));
      Tensor loss = nn::functional::mse_loss(p, b.labels);
      opt.zero_grad();
      loss.backward();
      opt.step();
      sched.step();
      const double l = loss.item();
      if (!std::isfinite(l)) throw Error(fmt::format("{}: the training loss became {} in epoch {}", name, l, epoch));
      loss_sum += l * b.size();
      seen += b.size();
      if (o.progress) bar.update(b.size(), fmt::format("loss {:.4f}", loss_sum / seen));
    }
    Validation v = validate(model, ds, val);
    EpochLog e;
    e.epoch = epoch;
    e.train_loss = loss_sum / std::max<int64_t>(seen, 1);
    e.val_loss = v.loss;
    e.val_accuracy = v.accuracy;
    e.val_auc = v.auc;
    e.learning_rate = opt.lr();
    e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.log.epochs.push_back(e);
    const bool has_val = !val.empty();
    if (o.progress)
      bar.finish(has_val ? fmt::format("loss {:.4f}  val loss {:.4f} acc {:.3f} auc {:.3f}", e.train_loss, v.loss,
                                       v.accuracy, v.auc)
                         : fmt::format("loss {:.4f}  (no validation records)", e.train_loss));

    if (!has_val || v.score > s.best_score) {
      s.best_score = has_val ? v.score : 0.0;
      s.best_epoch = epoch;
      bad_epochs = 0;
      nn::save_safetensors(best.string(), model.state_dict(), {{"epoch", std::to_string(epoch)}});
    } else {
      ++bad_epochs;
    }
    finished = epoch == o.epochs || (o.patience > 0 && has_val && bad_epochs >= o.patience);
    s.stopped_early = finished && epoch < o.epochs;
    optim::save_checkpoint(ckpt.string(), model.state_dict(), opt, &sched,
                           {{"epoch", std::to_string(epoch)},
                            {"best_epoch", std::to_string(s.best_epoch)},
                            {"best_score", fmt::format("{:.17g}", s.best_score)},
                            {"bad_epochs", std::to_string(bad_epochs)},
                            {"finished", finished ? "1" : "0"},
                            {"train_options", o.to_json().dump()},
                            {"log", log_to_json(s.log).dump()}});
    write_file_atomic(log_csv, training_csv(s.log));
    if (s.stopped_early && o.progress)
      fmt::print(stderr, "{}: no better validation score for {} epochs: stopping after epoch {} (best: {})\n", name,
                 o.patience, epoch, s.best_epoch);
  }
  if (!fs::exists(best)) throw Error(fmt::format("{}: no best weights in {}", name, best.string()));
  model.load_state_dict(nn::load_safetensors(best.string()).tensors);
  return s;
}

}  // namespace sleepnet::screening
