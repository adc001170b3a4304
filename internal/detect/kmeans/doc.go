// Package kmeans is the benign-request model of the application-layer DoS
// detector (FineLame, Demoulin et al., USENIX ATC 2019, done right). A
// kernel probe measures, for every request, a vector of resources it used
// (cpu_ns, page_faults, mem_bytes, rx_bytes, tx_bytes, idle_ns, ...; the
// package is generic over named features). The model is trained on the
// completed requests of a benign window and then judges completed
// requests (Score) and, periodically, requests still running
// (ScoreInFlight), so that a request burning CPU is flagged long before it
// ends.
//
// # Normalisation
//
// Every feature is transformed (log1p by default, or none) and
// standardised: z = (T(x) - centre) / scale, where centre and scale are
// the mean and standard deviation of the transformed training values left
// once the 0.1% lowest and highest are dropped (optionally also those
// beyond k MADs). A scale is never below MinScale (default 0.25 in log
// units, a change of about 28%): a feature constant in training (no page
// faults, say) gives finite numbers, and a request that has some still
// deviates.
//
// # Clusters
//
// Benign requests come in a few mixes (static files, API calls,
// uploads...). They are clustered by k-means on the standardised vectors:
// k-means++ initialisation from a seeded random source, then Lloyd
// iterations in parallel over fixed chunks of rows whose partial sums are
// merged in chunk order, so a seed gives the same model whatever
// GOMAXPROCS is. An empty cluster is reseeded with the row farthest from
// its centre. Unless Config.K fixes it, k is chosen among 1..KMax (8) on a
// subsample of at most 20,000 vectors by the Bayesian information
// criterion of the clustering read as a Gaussian mixture with the
// clusters' covariances: k = 1 wins on one blob (splitting a Gaussian
// never pays for its weights), and k is refused when a cluster would hold
// less than 0.5% of the subsample. The best k-means run there seeds a
// final Lloyd run on all vectors.
//
// # Distance and thresholds
//
// A completed request's distance to a cluster is the Mahalanobis distance
// sqrt(eᵀ Σ⁻¹ e), e = z - centre, with the cluster's covariance Σ shrunk
// towards its diagonal (Schäfer–Strimmer weight, at least 1%) and every
// variance floored at MinScale. Unlike FineLame's sum of standardised
// coordinates, it tells apart mixes with equal sums: more CPU and fewer
// bytes sent than a cluster's correlation allows is far even when the
// coordinates add up the same.
//
// Each cluster's threshold is Margin × the Quantile of its own training
// members' distances: by default 1.25 × the 99.9% quantile. The quantile
// bounds the false positive rate on the training distribution at 0.1%
// per cluster without assuming a shape for it; the margin absorbs the
// estimation error of a high quantile from a finite (and for a small
// cluster, few hundred) sample, the in-sample optimism of distances to a
// covariance fitted on the same members, and drift between training and
// use. For Gaussian members in 7 dimensions it puts the threshold at 6.2
// standard deviations, about FineLame's mean + 5·std of the scores, which
// leaves a false positive rate of about 3·10⁻⁶; heavier tails get a wider
// threshold from the quantile itself.
//
// Score divides the distance to every cluster by that cluster's threshold
// and keeps the least ratio: a score of 1 or more means no cluster accepts
// the request. An outlier's Top explains it (Explain does for any
// result): every feature's share of the squared distance, its value and
// the cluster's centre in original units, largest share first. Scoring
// an accepted vector allocates nothing.
//
// # In flight
//
// A request still running has a partial vector, every feature of which
// only grows up to its final value. ScoreInFlight uses a one-sided score
// per cluster, sqrt(Σ_j max(0, (z_j - μ_cj) / σ_cj)²) with σ_cj the
// cluster's standard deviations, divided by its own threshold (Margin ×
// Quantile of the same score over the cluster's completed training
// members), and keeps the least ratio. Every per-cluster ratio, and so the
// least, is monotone non-decreasing in every feature: a partial vector
// never scores above its final vector. A benign request is thus flagged
// in flight only if its completed vector is over the one-sided threshold,
// and the in-flight false positive rate is bounded by that of the
// one-sided score on completed requests, which the quantile controls.
// Having used less of a resource than usual so far is no evidence either
// way, so deficits do not count.
//
// # Files
//
// Save and Load read and write a versioned JSON model (features,
// normalisation, centres, covariances and their inverses, thresholds,
// training summary). WriteTrainingSet, WriteTestSet, ScoresWriter,
// WriteClusters and WriteNormalisation write FineLame-style CSV files.
// A Trainer collects a stream of vectors with bounded memory (a reservoir
// sample beyond Config.Cap) and trains on them.
package kmeans
