# R reference for `make test-r` (tests/cohort/test_r_crosscheck.py): spatstat's isotropic
# Lcross on spicyR's window, and spicyR's count-weighted lmerTest model.
#
#   Rscript spicyr_crosscheck.R lcross CELLS.csv OUT.csv
#     CELLS.csv: sample_id, x, y, cell_type. OUT.csv: sample, from, to, value, where value is
#     spicyR's statistic mean(L$iso - L$theo) of Lcross(X, from, to, correction = "isotropic")
#     on ppp(x, y, xrange = c(0, max(x)), yrange = c(0, max(y))) with spatstat's default r
#     grid (spicyR's getStat / pppGenerate).
#
#   Rscript spicyr_crosscheck.R lmer TABLE.csv WEIGHTS.csv COEF.csv
#     TABLE.csv: sample, subject, condition, pair, value, count1, count2 (one row per image and
#     pair). Fits spicyR's weight function mgcv::gam(resSq ~ ti(count1, count2)) on all pairs,
#     w = 1 / sqrt(z - min(z) + 1) normalised per pair, then
#     lmerTest::lmer(value ~ condition + (1 | subject), weights = w) per pair (REML).
#     WEIGHTS.csv: sample, pair, weight. COEF.csv: pair, estimate, se, df, t, p.
suppressPackageStartupMessages({
  library(spatstat)
})
args <- commandArgs(trailingOnly = TRUE)

if (args[1] == "lcross") {
  cells <- read.csv(args[2], stringsAsFactors = FALSE)
  types <- sort(unique(cells$cell_type))
  rows <- list()
  for (s in unique(cells$sample_id)) {
    img <- cells[cells$sample_id == s, ]
    X <- suppressWarnings(ppp(img$x, img$y, xrange = c(0, max(img$x)),
                              yrange = c(0, max(img$y)),
                              marks = factor(img$cell_type, levels = types)))
    present <- types[types %in% img$cell_type]
    for (a in present) for (b in present) {
      value <- tryCatch({
        L <- Lcross(X, from = a, to = b, correction = "isotropic")
        mean(L$iso - L$theo)
      }, error = function(e) NA)
      rows[[length(rows) + 1]] <- data.frame(sample = s, from = a, to = b, value = value)
    }
  }
  write.csv(do.call(rbind, rows), args[3], row.names = FALSE)
} else if (args[1] == "lmer") {
  suppressPackageStartupMessages({
    library(mgcv)
    library(lmerTest)
  })
  table <- read.csv(args[2], stringsAsFactors = FALSE)
  table$resSq <- ave(table$value, table$pair,
                     FUN = function(x) (x - mean(x, na.rm = TRUE))^2)
  weightFunction <- gam(resSq ~ ti(count1, count2), data = table)
  weights <- list()
  coefs <- list()
  for (p in unique(table$pair)) {
    d <- table[table$pair == p & !is.na(table$value), ]
    z1 <- predict(weightFunction, d)
    w <- 1 / sqrt(z1 - min(z1) + 1)
    d$w <- w / sum(w)
    fit <- lmer(value ~ condition + (1 | subject), data = d, weights = w)
    co <- summary(fit)$coefficients
    weights[[p]] <- data.frame(sample = d$sample, pair = p, weight = d$w)
    coefs[[p]] <- data.frame(pair = p, estimate = co[2, 1], se = co[2, 2], df = co[2, 3],
                             t = co[2, 4], p = co[2, 5])
  }
  write.csv(do.call(rbind, weights), args[3], row.names = FALSE)
  write.csv(do.call(rbind, coefs), args[4], row.names = FALSE)
} else {
  stop("usage: spicyr_crosscheck.R lcross|lmer ...")
}
