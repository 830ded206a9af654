//! Robot action codec: golden vectors, round trips, edge cases, statistics files, gripper rules.

use magma_actions::robot::{
    euler_to_axis_angle, euler_to_rotation_vector, extract_action_ids, libero_gripper,
    widowx_gripper, ActionTokenizer, Embodiment, EnvCommand, RobotActionDecoder, StatisticsSet,
    StickyGripper,
};
use magma_actions::ActionError;
use proptest::prelude::*;

const MAGMA_VOCAB: u32 = 128_000;

/// The action-token dump posted on the reference's issue tracker (microsoft/Magma #36/#59):
/// seven action ids followed by `<|eot_id|>` (128009).
const ISSUE_DUMP: [u32; 8] = [
    127857, 127873, 127868, 127904, 127861, 127874, 127744, 128009,
];

fn tokenizer() -> ActionTokenizer {
    ActionTokenizer::new(MAGMA_VOCAB).unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "dim {i}: got {g}, want {w}");
    }
}

/// Oracle: the reference's own numpy expressions, run in /work/pyref (numpy 2.x) with the
/// constants of `magma_model.py` (pasted output):
/// ```text
/// b = np.linspace(-1, 1, 256); c = (b[:-1] + b[1:]) / 2
/// n = c[np.clip(128000 - ids - 1, 0, 254)]
/// raw = np.where(mask, 0.5 * (n + 1) * (q99 - q01) + q01, n)
/// ```
/// The bin centres are compared bit for bit (the edges follow numpy's linspace evaluation);
/// the closed form `-1 + (2k + 1) / 255` differs from them in the last bits.
#[test]
fn issue_dump_decodes_to_the_reference_values() {
    let norm = [
        0.11764705882352944,
        -0.007843137254901933,
        0.03137254901960773,
        -0.25098039215686274,
        0.08627450980392148,
        -0.01568627450980392,
        0.996078431372549,
    ];
    let bridge = [
        0.003146326296469725,
        -0.0007478823328719852,
        0.008073165028849059,
        -0.019935301902247515,
        -0.00011073313916434846,
        -0.004902105561658515,
        0.996078431372549,
    ];
    let google = [
        0.0005488656636546407,
        -0.0005751640717774342,
        0.00047595176743520096,
        0.0006389907008292339,
        1.5879135505492137e-05,
        -0.0011703810195131115,
        0.996078431372549,
    ];
    let ids = extract_action_ids(&ISSUE_DUMP, 7).unwrap();
    assert_eq!(ids, &ISSUE_DUMP[..7]);
    let decoded = tokenizer().decode(ids);
    assert_eq!(decoded, norm);

    let stats = StatisticsSet::builtin();
    for (key, want) in [
        ("bridge_orig", bridge),
        ("google_robot", google),
        ("fractal20220817_data", google),
    ] {
        let raw = stats
            .get(Some(key))
            .unwrap()
            .action
            .unnormalize(&decoded)
            .unwrap();
        assert_close(&raw, &want, 1e-12);
    }
}

/// The built-in tables agree with the 6-digit values quoted in the spec (§4.2).
#[test]
fn builtin_statistics_match_the_spec_table() {
    let stats = StatisticsSet::builtin();
    let bridge = &stats.get(Some("bridge_orig")).unwrap().action;
    assert_close(
        &bridge.q01,
        &[
            -0.028727, -0.041703, -0.026094, -0.080921, -0.092887, -0.207183, 0.0,
        ],
        6e-7,
    );
    assert_close(
        &bridge.q99,
        &[
            0.028310, 0.040855, 0.040162, 0.081920, 0.077929, 0.203826, 1.0,
        ],
        6e-7,
    );
    let google = &stats.get(Some("google_robot")).unwrap().action;
    assert_close(
        &google.q01,
        &[
            -0.224535, -0.148200, -0.231590, -0.351799, -0.419301, -0.436435, 0.0,
        ],
        6e-7,
    );
    assert_close(
        &google.q99,
        &[
            0.178247, 0.149384, 0.218424, 0.589267, 0.352727, 0.447967, 1.0,
        ],
        6e-7,
    );
    assert!((bridge.mean.as_ref().unwrap()[6] - 0.5765).abs() < 1e-4);
    assert!((google.mean.as_ref().unwrap()[6] - 0.5354).abs() < 1e-4);
    assert!(!bridge.is_masked(6) && bridge.is_masked(0));
}

/// Spec Appendix A: 127744 → k 254 → 0.99608; 127872 → k 127 → 0.0; 127999 → k 0 → −0.99608.
#[test]
fn appendix_a_vectors() {
    let tok = tokenizer();
    let got = tok.decode(&[127744, 127872, 127999]);
    assert!((got[0] - 0.99608).abs() < 5e-6);
    assert!(got[1].abs() < 1e-12);
    assert!((got[2] + 0.99608).abs() < 5e-6);
    assert_eq!(tok.token_range(), 127744..=127999);
}

#[test]
fn encode_edges_follow_clip_then_digitize() {
    let tok = tokenizer();
    // +1 → bin 256 → the lowest id; −1 → bin 1 → the highest id; out of range is clipped
    assert_eq!(
        tok.encode(&[1.0, -1.0, 7.5, -3.0, f64::INFINITY, f64::NEG_INFINITY, 0.0])
            .unwrap(),
        vec![127744, 127999, 127744, 127999, 127744, 127999, 127872]
    );
    // NaN must not become a token (numpy would give bin 256)
    let err = tok.encode(&[0.0, f64::NAN]).unwrap_err();
    assert!(matches!(err, ActionError::NonFinite { .. }), "{err}");
}

#[test]
fn id_round_trip_is_exact_except_the_folded_top_bin() {
    let tok = tokenizer();
    for id in 127745..=127999u32 {
        assert_eq!(tok.encode(&tok.decode(&[id])).unwrap(), vec![id]);
    }
    // bins 255 and 256 share the last centre, which encodes back into bin 255
    assert_eq!(tok.encode(&tok.decode(&[127744])).unwrap(), vec![127745]);
}

#[test]
fn base_vocab_is_a_parameter() {
    // OpenVLA's Llama-2 vocabulary: ids 31744..=31999 (anchors §1.1)
    let tok = ActionTokenizer::new(32_000).unwrap();
    assert_eq!(tok.token_range(), 31744..=31999);
    assert_eq!(tok.encode(&[0.0]).unwrap(), vec![31872]);
    // the fixture models' truncated vocabulary (config.json `tokenizer_vocab_size` = 1000)
    let tiny = ActionTokenizer::new(1000).unwrap();
    assert_eq!(tiny.token_range(), 744..=999);
}

#[test]
fn foreign_ids_are_clipped_like_the_reference_or_rejected_on_request() {
    let tok = tokenizer();
    // 128009 (<|eot_id|>) is above the range: d = -9 → k clipped to 0
    assert_eq!(tok.decode(&[128009]), tok.decode(&[127999]));
    // a plain text id far below the range → last centre
    assert_eq!(tok.decode(&[42]), tok.decode(&[127744]));
    let err = tok.check_ids(&[127800, 128009]).unwrap_err();
    assert!(err.to_string().contains("128009"), "{err}");
    assert!(matches!(
        err,
        ActionError::NotAnActionToken { position: 1, .. }
    ));
}

#[test]
fn too_few_tokens_is_a_clear_error() {
    let err = extract_action_ids(&[127800, 127801, 128009], 7).unwrap_err();
    assert!(matches!(
        err,
        ActionError::TooFewActionTokens {
            got: 3,
            needed: 8,
            ..
        }
    ));
    assert!(err.to_string().contains("at least 8"), "{err}");
}

proptest! {
    #[test]
    fn encode_decode_is_within_half_a_bin(v in -1.0f64..=1.0) {
        let tok = tokenizer();
        let back = tok.decode(&tok.encode(&[v]).unwrap())[0];
        prop_assert!((back - v).abs() <= 1.0 / 255.0 + 1e-12, "{v} -> {back}");
    }

    #[test]
    fn normalize_then_unnormalize_is_identity_inside_the_bounds(t in prop::array::uniform6(0.0f64..=1.0)) {
        let stats = StatisticsSet::builtin();
        let bridge = &stats.get(Some("bridge_orig")).unwrap().action;
        let raw: Vec<f64> = (0..6)
            .map(|i| bridge.q01[i] + t[i] * (bridge.q99[i] - bridge.q01[i]))
            .chain([0.3])
            .collect();
        let back = bridge.unnormalize(&bridge.normalize(&raw).unwrap()).unwrap();
        for (a, b) in raw.iter().zip(&back) {
            prop_assert!((a - b).abs() < 1e-6);
        }
    }
}

#[test]
fn normalize_clips_and_zeroes_unused_dimensions() {
    let json = r#"{"toy": {"action": {
        "q01": [-1.0, 0.0], "q99": [1.0, 1.0], "min": [-2.0, 0.5], "max": [2.0, 0.5],
        "mean": [0.0, 0.5], "std": [1.0, 0.0]}}}"#;
    let set = StatisticsSet::from_json_str(json, "toy.json").unwrap();
    let toy = &set.get(None).unwrap().action;
    // dim 0: (2·(5+1)/2 − 1) clipped to 1; dim 1: min == max → 0 (mask absent → all masked)
    assert_eq!(toy.normalize(&[5.0, 0.9]).unwrap(), vec![1.0, 0.0]);
}

fn write_temp(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("magma-actions-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn statistics_file_in_openvla_layout() {
    let path = write_temp(
        "dataset_statistics.json",
        r#"{"libero_goal_no_noops": {
            "action": {"mean": [0,0,0,0,0,0,0.5], "std": [1,1,1,1,1,1,0.5],
                       "max": [1,1,1,1,1,1,1], "min": [-1,-1,-1,-1,-1,-1,0],
                       "q01": [-0.5,-0.5,-0.5,-0.1,-0.1,-0.1,0], "q99": [0.5,0.5,0.5,0.1,0.1,0.1,1],
                       "mask": [true,true,true,true,true,true,false]},
            "proprio": {"mean": [0,0,0,0,0,0,0,0], "std": [1,1,1,1,1,1,1,1],
                        "max": [1,1,1,1,1,1,1,1], "min": [0,0,0,0,0,0,0,0],
                        "q01": [0,0,0,0,0,0,0,0], "q99": [1,1,1,1,1,1,1,1]},
            "num_transitions": 52042, "num_trajectories": 428}}"#,
    );
    let set = StatisticsSet::from_file(&path).unwrap();
    let entry = set.get(Some("libero_goal_no_noops")).unwrap();
    assert_eq!(entry.num_transitions, Some(52042));
    assert_eq!(entry.proprio.as_ref().unwrap().dim(), 8);
    let raw = entry
        .action
        .unnormalize(&[0.0, 1.0, -1.0, 0.5, 0.0, 0.0, 0.25])
        .unwrap();
    assert_close(&raw, &[0.0, 0.5, -0.5, 0.05, 0.0, 0.0, 0.25], 1e-12);
}

#[test]
fn unknown_unnorm_key_lists_the_available_keys() {
    let err = StatisticsSet::builtin()
        .get(Some("bridge"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`bridge`"), "{err}");
    for key in ["bridge_orig", "fractal20220817_data", "google_robot"] {
        assert!(err.contains(key), "{err}");
    }
    let err = StatisticsSet::builtin().get(None).unwrap_err();
    assert!(matches!(err, ActionError::AmbiguousUnnormKey { .. }));
}

#[test]
fn malformed_statistics_name_the_missing_field() {
    let path = write_temp(
        "broken_statistics.json",
        r#"{"my_robot": {"action": {"q01": [0, 0], "mask": [true, false]}}}"#,
    );
    let err = StatisticsSet::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("broken_statistics.json"), "{err}");
    assert!(err.contains("my_robot") && err.contains("q99"), "{err}");

    let err = StatisticsSet::from_json_str(r#"{"r": {"proprio": {}}}"#, "s.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`action`"), "{err}");

    let err = StatisticsSet::from_json_str(
        r#"{"r": {"action": {"q01": [0, 0], "q99": [1, 1], "mask": [true]}}}"#,
        "s.json",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`mask` has 1 entries"), "{err}");

    let missing = StatisticsSet::from_file("/nonexistent/dataset_statistics.json").unwrap_err();
    assert!(missing
        .to_string()
        .contains("/nonexistent/dataset_statistics.json"));
}

#[test]
fn dimension_mismatch_is_reported() {
    let stats = StatisticsSet::builtin();
    let err = stats
        .get(Some("bridge_orig"))
        .unwrap()
        .action
        .unnormalize(&[0.0; 6])
        .unwrap_err();
    assert!(matches!(
        err,
        ActionError::DimensionMismatch {
            expected: 7,
            got: 6,
            ..
        }
    ));
}

/// Hand-worked from the reference's `step` logic with `sticky_gripper_num_repeat = 10`:
/// step 1 has no previous value (0); step 2 changes by 0.01 (passed through); step 3 closes
/// (1.0 → 0.0: relative 0.99 > 0.5, latched) and the latch is emitted 10 times (steps 3–12)
/// whatever is predicted; step 13 is 0 again; step 14 opens (relative −1, latched) and on
/// step 15 a new flip (+1) is ignored because the latch is still on.
#[test]
fn sticky_gripper_reproduces_the_reference_sequence() {
    let opens = [
        1.0, 0.99, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0,
    ];
    let mut want = vec![0.0, 0.01];
    want.extend([0.99; 10]);
    want.extend([0.0, -1.0, -1.0]);
    let mut g = StickyGripper::default();
    let got: Vec<f64> = opens.iter().map(|&o| g.step(o)).collect();
    assert_close(&got, &want, 1e-12);
    assert!(g.is_sticky());
}

#[test]
fn widowx_and_libero_gripper_rules() {
    assert_eq!(widowx_gripper(0.51), 1.0);
    assert_eq!(widowx_gripper(0.5), -1.0);
    assert_eq!(widowx_gripper(0.0), -1.0);
    assert_eq!(libero_gripper(0.996), -1.0);
    assert_eq!(libero_gripper(0.2), 1.0);
    assert_eq!(libero_gripper(0.0), 1.0);
    // np.sign(0) = 0, then × −1
    assert_eq!(libero_gripper(0.5), 0.0);
}

fn mat_mul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Independent oracle: static x-y-z Euler → `Rz(yaw) Ry(pitch) Rx(roll)`, compared with the
/// Rodrigues matrix of the returned axis and angle.
fn euler_matrix(roll: f64, pitch: f64, yaw: f64) -> [[f64; 3]; 3] {
    let (sr, cr) = roll.sin_cos();
    let (sp, cp) = pitch.sin_cos();
    let (sy, cy) = yaw.sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]];
    let ry = [[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]];
    let rz = [[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]];
    mat_mul(rz, mat_mul(ry, rx))
}

fn rodrigues(axis: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
    let [x, y, z] = axis;
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

proptest! {
    #[test]
    fn axis_angle_matches_the_rotation_matrix(
        roll in -3.0f64..3.0, pitch in -1.5f64..1.5, yaw in -3.0f64..3.0
    ) {
        let (axis, angle) = euler_to_axis_angle(roll, pitch, yaw);
        let norm: f64 = axis.iter().map(|a| a * a).sum::<f64>().sqrt();
        prop_assert!((norm - 1.0).abs() < 1e-12);
        prop_assert!((0.0..=std::f64::consts::PI * 2.0).contains(&angle));
        let want = euler_matrix(roll, pitch, yaw);
        let got = rodrigues(axis, angle);
        for i in 0..3 {
            for j in 0..3 {
                prop_assert!((want[i][j] - got[i][j]).abs() < 1e-9, "{want:?} vs {got:?}");
            }
        }
    }
}

#[test]
fn axis_angle_special_cases_follow_transforms3d() {
    // transforms3d docstring example: euler2axangle(0, 1.5, 0) → ([0, 1, 0], 1.5)
    let (axis, angle) = euler_to_axis_angle(0.0, 1.5, 0.0);
    assert_close(&axis, &[0.0, 1.0, 0.0], 1e-15);
    assert!((angle - 1.5).abs() < 1e-15);
    // identity → arbitrary axis [1, 0, 0], angle 0
    assert_eq!(euler_to_axis_angle(0.0, 0.0, 0.0), ([1.0, 0.0, 0.0], 0.0));
    // non-finite → angle NaN
    assert!(euler_to_axis_angle(f64::NAN, 0.0, 0.0).1.is_nan());
    // a pure negative roll gives axis −x rotated by +|roll|
    let v = euler_to_rotation_vector(-0.2, 0.0, 0.0);
    assert_close(&v, &[-0.2, 0.0, 0.0], 1e-12);
}

#[test]
fn decoder_applies_each_embodiment() {
    let stats = StatisticsSet::builtin();
    let bridge = stats.get(Some("bridge_orig")).unwrap().action.clone();
    let google = stats.get(Some("google_robot")).unwrap().action.clone();

    let mut widowx = RobotActionDecoder::new(tokenizer(), bridge.clone(), Some(Embodiment::Widowx));
    let step = widowx.decode_generated(&ISSUE_DUMP).unwrap();
    let Some(EnvCommand::SimplerEnv {
        world_vector,
        rot_axangle,
        gripper,
        terminate_episode,
    }) = step.command
    else {
        panic!("expected a SimplerEnv command")
    };
    assert_close(&world_vector, &step.unnormalized[..3], 0.0);
    let u = &step.unnormalized;
    assert_close(
        &rot_axangle,
        &euler_to_rotation_vector(u[3], u[4], u[5]),
        0.0,
    );
    assert_eq!((gripper, terminate_episode), (1.0, 0.0));

    // Google robot: first step has no previous gripper → 0; then a close is latched
    let mut g = RobotActionDecoder::new(tokenizer(), google, Some(Embodiment::Google));
    let first = g.decode_generated(&ISSUE_DUMP).unwrap();
    let mut closing = ISSUE_DUMP;
    closing[6] = 127999; // gripper bin 1 → −0.996 (closed)
    let second = g.decode_generated(&closing).unwrap();
    let gripper_of = |c: &Option<EnvCommand>| match c {
        Some(EnvCommand::SimplerEnv { gripper, .. }) => *gripper,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(gripper_of(&first.command), 0.0);
    assert!((gripper_of(&second.command) - (0.996078431372549 + 0.996078431372549)).abs() < 1e-12);

    let mut libero = RobotActionDecoder::new(tokenizer(), bridge, Some(Embodiment::Libero));
    let step = libero.decode_generated(&ISSUE_DUMP).unwrap();
    let Some(EnvCommand::Libero { action }) = step.command else {
        panic!("expected LIBERO")
    };
    assert_close(&action[..6], &step.unnormalized[..6], 0.0);
    assert_eq!(action[6], -1.0); // open (0.996) → −1
}
