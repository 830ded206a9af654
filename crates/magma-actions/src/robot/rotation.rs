//! Euler angles → axis-angle, with the semantics of transforms3d's
//! `euler2axangle(roll, pitch, yaw)` (static axes, `'sxyz'`), which SimplerEnv policies use.

/// Axis (unit vector) and angle of the rotation given by static-frame x-y-z Euler angles, i.e.
/// `R = Rz(yaw) · Ry(pitch) · Rx(roll)`.
///
/// Follows transforms3d: via the quaternion, identity (vector part below `3·ε`) → axis
/// `[1, 0, 0]`, angle 0; non-finite input → axis `[1, 0, 0]`, angle NaN.
///
/// ```
/// use magma_actions::robot::euler_to_axis_angle;
///
/// let (axis, angle) = euler_to_axis_angle(0.0, 0.3, 0.0);
/// assert!((axis[1] - 1.0).abs() < 1e-12 && (angle - 0.3).abs() < 1e-12);
/// ```
pub fn euler_to_axis_angle(roll: f64, pitch: f64, yaw: f64) -> ([f64; 3], f64) {
    let (w, x, y, z) = euler_sxyz_to_quaternion(roll, pitch, yaw);
    quaternion_to_axis_angle(w, x, y, z)
}

/// `axis · angle` (the rotation vector SimplerEnv's `rot_axangle` expects).
pub fn euler_to_rotation_vector(roll: f64, pitch: f64, yaw: f64) -> [f64; 3] {
    let (axis, angle) = euler_to_axis_angle(roll, pitch, yaw);
    axis.map(|a| a * angle)
}

/// transforms3d `euler2quat` for `sxyz` (i, j, k = x, y, z; no parity, repetition or frame flip).
fn euler_sxyz_to_quaternion(ai: f64, aj: f64, ak: f64) -> (f64, f64, f64, f64) {
    let (si, ci) = (ai / 2.0).sin_cos();
    let (sj, cj) = (aj / 2.0).sin_cos();
    let (sk, ck) = (ak / 2.0).sin_cos();
    let (cc, cs, sc, ss) = (ci * ck, ci * sk, si * ck, si * sk);
    (
        cj * cc + sj * ss,
        cj * sc - sj * cs,
        cj * ss + sj * cc,
        cj * cs - sj * sc,
    )
}

/// transforms3d `quat2axangle` with its default identity threshold (`3 · f64::EPSILON`).
fn quaternion_to_axis_angle(w: f64, x: f64, y: f64, z: f64) -> ([f64; 3], f64) {
    const FALLBACK_AXIS: [f64; 3] = [1.0, 0.0, 0.0];
    let identity_thresh = 3.0 * f64::EPSILON;
    let nq = w * w + x * x + y * y + z * z;
    if !nq.is_finite() {
        return (FALLBACK_AXIS, f64::NAN);
    }
    if nq < f64::EPSILON * f64::EPSILON {
        return (FALLBACK_AXIS, 0.0);
    }
    let (w, x, y, z) = if nq != 1.0 {
        let s = nq.sqrt();
        (w / s, x / s, y / s, z / s)
    } else {
        (w, x, y, z)
    };
    let len2 = x * x + y * y + z * z;
    if len2 < identity_thresh * identity_thresh {
        return (FALLBACK_AXIS, 0.0);
    }
    let theta = 2.0 * w.clamp(-1.0, 1.0).acos();
    let norm = len2.sqrt();
    ([x / norm, y / norm, z / norm], theta)
}
