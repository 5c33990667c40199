# Reference implementation, copied verbatim (each part below the marked lines) for the tests only.
# Repository: https://github.com/dbolya/parc
# Path: methods.py (feature_reduce, TransferabilityMethod, PARC)
# Commit: ddfca43a84d35328897d107d6f86e860b11801ce
# License: none stated (the repository has no LICENSE file at this commit); used here only as an
# independent reference in tests, not shipped in the package.
# PARC.forward reads the class count from the repository's `constants` module, which is not
# copied: the tests call feature_reduce and get_parc_correlation as forward does.

import numpy as np

import scipy.stats
import sklearn.preprocessing
import sklearn.decomposition


# --- methods.py
class TransferabilityMethod:	
	def __call__(self, 
		features:np.ndarray, probs:np.ndarray, y:np.ndarray,
		source_dataset:str, target_dataset:str, architecture:str,
		cache_path_fn) -> float:
		
		self.features = features
		self.probs = probs
		self.y = y

		self.source_dataset = source_dataset
		self.target_dataset = target_dataset
		self.architecture = architecture

		self.cache_path_fn = cache_path_fn

		# self.features = sklearn.preprocessing.StandardScaler().fit_transform(self.features)

		return self.forward()

	def forward(self) -> float:
		raise NotImplementedError



def feature_reduce(features:np.ndarray, f:int=None) -> np.ndarray:
	"""
	Use PCA to reduce the dimensionality of the features.

	If f is none, return the original features.
	If f < features.shape[0], default f to be the shape.
	"""
	if f is None:
		return features

	if f > features.shape[0]:
		f = features.shape[0]

	return sklearn.decomposition.PCA(
		n_components=f,
		svd_solver='randomized',
		random_state=1919,
		iterated_power=1).fit_transform(features)



class PARC(TransferabilityMethod):
	"""
	Computes PARC, a variation of RSA that uses target labels instead of target features to cut down on training time.
	This was presented in this paper.
	
	This method supports VOC2007.
	"""

	def __init__(self, n_dims:int=None, fmt:str=''):
		self.n_dims = n_dims
		self.fmt = fmt

	def forward(self):
		self.features = feature_reduce(self.features, self.n_dims)
		
		num_classes = constants.num_classes[self.target_dataset]
		labels = np.eye(num_classes)[self.y] if self.y.ndim == 1 else self.y

		return self.get_parc_correlation(self.features, labels)

	def get_parc_correlation(self, feats1, labels2):
		scaler = sklearn.preprocessing.StandardScaler()

		feats1  = scaler.fit_transform(feats1)

		rdm1 = 1 - np.corrcoef(feats1)
		rdm2 = 1 - np.corrcoef(labels2)
		
		lt_rdm1 = self.get_lowertri(rdm1)
		lt_rdm2 = self.get_lowertri(rdm2)
		
		return scipy.stats.spearmanr(lt_rdm1, lt_rdm2)[0] * 100

	def get_lowertri(self, rdm):
		num_conditions = rdm.shape[0]
		return rdm[np.triu_indices(num_conditions,1)]
