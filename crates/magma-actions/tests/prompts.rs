//! Prompt builders produce the reference's exact strings.

use magma_actions::marks::{GridPoint, MarkPosition};
use magma_actions::prompts::{
    robot_action, som_locate_question, ui_grounding, ui_qa, with_image_start_end, AitwStep,
    TomMarks, TomQuestion, TomSubject, SYSTEM_PROMPT,
};

#[test]
fn ui_and_robot_prompts() {
    assert_eq!(SYSTEM_PROMPT, "You are agent that can see, talk and act.");
    assert_eq!(
        ui_grounding("search for flights"),
        "<image>\nIn this view I need to click a button to \"search for flights\"? Provide the coordinates and the mark index of the containing bounding box if applicable."
    );
    assert_eq!(
        ui_qa("Q: what is the time?"),
        "<image>\nQ: what is the time? Answer the question briefly."
    );
    assert_eq!(
        robot_action("put the spoon on the towel"),
        "<image>\nWhat action should the robot take to put the spoon on the towel?"
    );
    assert_eq!(
        with_image_start_end("<image>\nx <image>"),
        "<image_start><image><image_end>\nx <image_start><image><image_end>"
    );
}

#[test]
fn aitw_step_prompt_matches_the_released_data() {
    // The first step of episode 17021440438302937530 in MagmaAI/Magma-AITW-SoM.
    let want = "<image>\nImagine you are interacting with an Android device step by step. You can see the screen and know the previous actions through recorded history. The screenshots are labeled with bounding boxes and numeric marks to guide your interactions. Your task is to determine the next action to perform. The possible actions include tapping, swiping, navigating, typing, or setting the task status.\n\nUse the following format for your output, selecting the appropriate key-value pair:\n```json\n{\n \"TAP\": dict, // Use {\"MARK\": mark_index} where `mark_index` is an integer corresponding to the bounding box on the screen, or {\"NORMALIZED_COORDINATE\": [x, y]} where `x` and `y` are float numbers between 0 and 1 representing the normalized coordinates on the screen.\n \"SWIPE\": str, // Choose \"UP\", \"DOWN\", \"LEFT\", or \"RIGHT\"\n \"NAVIGATE\": str, // Choose \"BACK\", \"HOME\", or \"ENTER\"\n \"TYPE\": str, // The text to be typed\n \"SET_TASK_STATUS\": str, // Choose \"COMPLETE\" or \"IMPOSSIBLE\"\n}\n```\n\nCurrent task: How much does a 2 bedroom apartment rent for in Chicago?\n\nPrevious actions:\nNone\n\nCurrent screenshot is labeled with 11 bounding boxes and numeric marks to guide your interactions. Determine your next action (Step 0) and provide the output in the specified dictionary format.";
    let step = AitwStep {
        task: "How much does a 2 bedroom apartment rent for in Chicago?",
        previous_actions: &[],
        step: 0,
        num_marks: 11,
    };
    assert_eq!(step.render(), want);
    let history = vec!["{\"PRESS\": \"HOME\"}".to_string()];
    let next = AitwStep {
        previous_actions: &history,
        step: 1,
        ..step
    };
    assert!(next
        .render()
        .contains("Previous actions:\n{\"PRESS\": \"HOME\"}\n\nCurrent screenshot"));
    assert!(next.render().contains("(Step 1)"));
}

#[test]
fn tom_questions_cover_every_variant() {
    let base = TomQuestion {
        subject: TomSubject::PersonDoing,
        task: "open the drawer",
        marks: TomMarks::Drawn(vec![1, 2, 5]),
        steps: 15,
        speed: None,
    };
    assert_eq!(
        base.render(),
        "<image>\n\nThe image is split into 256x256 grids, and labeled with numeric marks [1, 2, 5].\nThe person is doing: open the drawer. To finish the task, how to move the numerical marks in the image for the next 15 steps?\n"
    );
    let speed = TomQuestion {
        speed: Some(4),
        ..base.clone()
    };
    assert!(speed.render().ends_with(
        "how to move the numerical marks in the image with speed 4 for the next 15 steps?\n"
    ));
    let saying = TomQuestion {
        subject: TomSubject::PersonSaying,
        ..base.clone()
    };
    assert!(saying
        .render()
        .contains("\nThe person is saying: open the drawer. "));
    let textual = TomQuestion {
        subject: TomSubject::RobotDoing,
        marks: TomMarks::Textual(vec![
            MarkPosition {
                id: 1,
                at: GridPoint::new(12, 200),
            },
            MarkPosition {
                id: 2,
                at: GridPoint::new(40, 41),
            },
        ]),
        ..base
    };
    assert_eq!(
        textual.render(),
        "<image>\n\nThe image is split into 256x256 grids, and labeled with numeric marks: Mark 1 at [12, 200], Mark 2 at [40, 41].\nThe robot is doing: open the drawer. To finish the task, how to move the numerical marks in the image for the next 15 steps?\n"
    );
    assert_eq!(
        som_locate_question(),
        "<image>\n\nThe image is split into 256x256 grids, and labeled with numeric marks.\nPlease locate all the numerical marks in the image.\n"
    );
}
